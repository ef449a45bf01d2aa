"""Seeded synthetic SOURCE and TARGET languages: the built-in benchmark for mini-model adaptation.

Both languages realise the same meaning representations (``Sentence`` trees of ``Clause`` and ``NP``)
over one lexicon of made-up lemmas, so they share meaning and structure but no surface form:

* Nouns fall into four noun classes (animate, plant, tool, place) and inflect for number. Determiners,
  pronouns and relative pronouns agree with their noun in class and number; verbs agree with their
  subject in number and select the class of their subject and object; adjectives come in antonym pairs
  that modify nouns of one class only. A masked word is thus predictable, but only from its context:
  a small model must learn agreement and selection to fill it in.
* Sentences (6-30 words) chain up to three clauses. A later clause's subject is often a pronoun that
  agrees with a noun of an earlier clause (the only one of its class and number there, so it is
  resolvable), and subject relative clauses separate a subject from its agreeing verb. These long-range
  dependencies are what depth is needed for.
* SOURCE is SVO, ``det adj noun [rel-clause]``, negation before the verb. TARGET is SOV by default
  (``--word_order svo`` keeps SVO) with ``[rel-clause] noun adj det`` and negation after the verb;
  ``--word_order source`` keeps every source order (a relexification: only the words differ). TARGET
  spells every stem and inflection suffix from a different alphabet. Each source form maps to one target
  form (``dictionary.tsv``), so a translation pair has the same words up to translation and order:
  transfer to TARGET can only come from the shared structure and meaning, not from the surface.
* Corpora can come as documents (``--document_length``): within one, nouns recur (``--entity_reuse``),
  so packed training blocks teach a model to match a word with its earlier mention, as real text does.

The sentence-pair task (XNLI schema; 0 entailment, 1 neutral, 2 contradiction) is labelled from the
meanings. A sentence asserts atomic facts: events (verb, subject, object, negated) and properties
(entity, adjective). Conventions of this made-up world: within a pair, the same noun lemma and number
name the same entity; a subject does one thing per verb ("X eats A" rules out "X eats B"); antonyms are
complementary ("not big" = "small"). A hypothesis is one clause made from a premise clause (resolved
pronoun, extracted relative clause, or main clause) by dropping modifiers, negating, or substituting a
noun, verb, adjective or role (substitutes mostly taken from the premise); it is kept when its facts,
checked against the premise's, give the label wanted, and when its number of words missing from the
premise (0, 1, 2+), drawn independently of the label, matches: surface overlap and new words are thus
weak cues (see ``lexical_overlap_baseline``). Conjunctions all mean "and" here.

``--task_mode`` picks how pairs are made: ``controlled`` (the default, above), ``first_clause`` (the
hypothesis restates, negates or re-attributes the premise's first clause; surface cues weak, but it
needs the hypothesis lined up with one clause of the premise) and ``one_clause`` (the same moves on a
one-clause premise: learnable by a small model that matches words across the pair, so surface cues are
strong; ``meta.json`` reports the lexical-overlap baseline of every mode). The labels of every mode are
decided by ``judge`` from the meanings.

One module per concern: ``config`` (constants and flags), ``meanings`` (meaning trees and their facts),
``lexicon``, ``grammar`` (realising a meaning in either language), ``sampler`` (sentences and pairs),
``task`` (the labelled task) and ``output`` (``generate``: the files on disk). ``python -m mmadapt.synthetic``
writes a pair.
"""

from __future__ import annotations

# The generator's interface (the demo, the tests and users import these from mmadapt.synthetic).
from .config import (CONTRADICTION, ENTAILMENT, MAX_WORDS, MIN_WORDS, NEUTRAL, OUTPUT_FILES,  # noqa: F401
                     SyntheticConfig, check_config)
from .output import GeneratorOutput, generate, main, unigram_entropy  # noqa: F401
from .grammar import Realiser, sentence_length  # noqa: F401
from .lexicon import Lexicon, build_lexicon  # noqa: F401
from .meanings import (NP, Clause, Sentence, clause_facts, coherent, consistent, judge, noun_phrases,  # noqa: F401
                       resolved_clauses, sentence_facts)
from .sampler import Sampler  # noqa: F401
from .task import lexical_overlap_baseline, task_pairs  # noqa: F401
