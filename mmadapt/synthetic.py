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
"""

from __future__ import annotations

import json
import math
import os
import random
import sys
from bisect import bisect
from collections import Counter
from dataclasses import asdict, dataclass, replace
from itertools import accumulate

from mmadapt.config import _f
from mmadapt.errors import ConfigError
from mmadapt.outdir import check_replaceable, replaced_directory

NOUN_CLASSES = ("animate", "plant", "tool", "place")
ENTAILMENT, NEUTRAL, CONTRADICTION = 0, 1, 2
# Disjoint letters make every source string differ from every target string.
ALPHABETS = {"source": ("ptkmnsl", "aiu"), "target": ("bdgvzrh", "eoy")}
MIN_LEXICON, MAX_LEXICON = 40, 5000
# Shape of the sampled sentences: probabilities of the optional parts.
P_COPULA, P_NEGATED, P_PLURAL, P_ADJECTIVE, P_RELATIVE, P_PRONOUN = 0.15, 0.2, 0.3, 0.35, 0.15, 0.6
CLAUSE_COUNTS, CLAUSE_WEIGHTS = (1, 2, 3), (0.45, 0.4, 0.15)
MIN_WORDS, MAX_WORDS = 6, 30
N_CONJUNCTIONS = 3
WORD_ORDERS = ("sov", "svo", "source")
OUTPUT_FILES = ("source.train.txt", "source.test.txt", "target.train.txt", "target.test.txt",
                "parallel.tsv", "parallel.dev.tsv", "dictionary.tsv", "dictionary.lemmas.tsv",
                "task.source.train.jsonl", "task.source.dev.jsonl", "task.source.test.jsonl", "task.target.dev.jsonl",
                "task.target.test.jsonl", "meta.json")


@dataclass
class SyntheticConfig:
    """The CLI flags; every output is a function of these alone."""
    seed: int = _f(0, "seed of the lexicon, the corpora and the task")
    lexicon_size: int = _f(400, "content lemmas (nouns, verbs, adjectives); about 30 function words come on top")
    word_order: str = _f("sov", "TARGET's order: sov, svo, or source (SOURCE's orders throughout); SOURCE is SVO",
                         choices=("sov", "svo", "source"))
    source_sentences: int = _f(60000, "SOURCE sentences (95% train, 5% test)")
    target_sentences: int = _f(60000, "TARGET sentences (95% train, 5% test)")
    parallel_pairs: int = _f(2000, "test translation pairs")
    parallel_dev: int = _f(500, "dev translation pairs: choosing 'best' embeddings never reads the test pairs")
    task_train: int = _f(6000, "SOURCE task training examples")
    task_test: int = _f(1500, "SOURCE and TARGET task test examples")
    task_dev: int = _f(600, "SOURCE and TARGET task dev examples (selection), drawn apart from the test examples")
    document_length: int = _f(1, "corpus sentences per document, whose nouns recur (1: independent sentences)")
    entity_reuse: float = _f(0.5, "chance that a noun is one its document already mentioned")
    task_mode: str = _f("controlled", "controlled (overlap-balanced moves), first_clause or one_clause (see the "
                        "Sampler's *_pair methods)", choices=("controlled", "first_clause", "one_clause"))
    premise_negated: float = _f(0.5, "one_clause mode: share of negated premises (0: the label needs no polarity "
                                "comparison across the pair)")


# ----------------------------------------------------------------------------------------- meanings
@dataclass(slots=True)  # meanings are never mutated: edits make new ones
class NP:
    noun: int
    plural: bool
    adj: int | None = None
    rel: Clause | None = None  # subject relative clause; its subject is this noun
    pronoun: bool = False  # said as a pronoun agreeing with `noun`, its antecedent


@dataclass(slots=True)
class Clause:
    subject: NP
    verb: int | None = None  # None: copular clause "subject is adj"
    obj: NP | None = None
    adj: int | None = None
    negated: bool = False


@dataclass(slots=True)
class Sentence:
    clauses: tuple[Clause, ...]
    conjunctions: tuple[int, ...] = ()  # one between each two clauses


# ------------------------------------------------------------------------------------------ lexicon
@dataclass
class Lexicon:
    """Lemma classes and frames (shared by both languages) and each language's words."""
    noun_class: list[int]
    verb_frame: list[tuple[int, int | None]]  # (subject class, object class or None: intransitive)
    adj_class: list[int]  # adjectives 2k and 2k+1 are antonyms
    words: dict[str, dict]  # language -> part of speech -> forms, see _make_words
    stems: dict[str, dict[str, list[str]]]  # language -> noun/verb/adj -> lemma stems

    def __post_init__(self):
        by = lambda classes: [[i for i, c in enumerate(classes) if c == k] for k in range(4)]  # noqa
        self.nouns_by_class, self.adjs_by_class = by(self.noun_class), by(self.adj_class)
        self.verbs_by_subject = by([s for s, _ in self.verb_frame])

    def forms(self, lang: str) -> list[str]:
        """Every surface form of `lang`, in a fixed order that aligns the two languages."""
        w = self.words[lang]
        agreeing = [f for key in ("det", "pron", "rel") for pair in w[key] for f in pair]
        return (agreeing + w["cop"] + [w["neg"]] + w["conj"] + [f for p in w["noun"] for f in p]
                + [f for p in w["verb"] for f in p] + w["adj"])


def _spread(rng, n: int) -> list[int]:
    """n noun-class ids, as even as possible, in random order (every class is covered)."""
    out = [i % 4 for i in range(n)]
    rng.shuffle(out)
    return out


def build_lexicon(seed: int, size: int) -> Lexicon:
    rng = random.Random(f"{seed}:lexicon")
    n_pairs = max(4, round(size * 0.15))
    n_nouns = round(size * 0.4)
    n_verbs = size - n_nouns - 2 * n_pairs
    noun_class = _spread(rng, n_nouns)
    adj_class = [c for c in _spread(rng, n_pairs) for _ in (0, 1)]
    # Two verbs per subject class first, so every class can be a subject; then mostly animate ones.
    subjects = _spread(rng, 8) + rng.choices(range(4), weights=(0.55, 0.15, 0.15, 0.15), k=n_verbs - 8)
    verb_frame = [(s, None if rng.random() < 0.25 else rng.randrange(4)) for s in subjects]
    words, stems = {}, {}
    for lang in ALPHABETS:
        words[lang], stems[lang] = _make_words(random.Random(f"{seed}:{lang}:words"), lang,
                                               n_nouns, n_verbs, len(adj_class))
    return Lexicon(noun_class, verb_frame, adj_class, words, stems)


def _make_words(rng, lang: str, n_nouns: int, n_verbs: int, n_adjs: int):
    consonants, vowels = ALPHABETS[lang]
    syllables = [c + v for c in consonants for v in vowels]
    used: set[str] = set()

    def word(lengths, suffixes=("",)):
        # Resample until no form collides with any form already made: forms are unambiguous.
        while True:
            stem = "".join(rng.choice(syllables) for _ in range(rng.choice(lengths)))
            forms = [stem + s for s in suffixes]
            if not used.intersection(forms) and len(set(forms)) == len(forms):
                used.update(forms)
                return stem, forms

    plural, verb_sg, verb_pl = rng.sample(syllables, 3)  # this language's own inflection suffixes
    short = lambda: word((1, 2))[1][0]  # noqa: E731 - function words
    agreeing = lambda: [[short(), short()] for _ in NOUN_CLASSES]  # noqa: E731 - [class][plural]
    w = {"det": agreeing(), "pron": agreeing(), "rel": agreeing(), "cop": [short(), short()],
         "neg": short(), "conj": [short() for _ in range(N_CONJUNCTIONS)]}
    nouns = [word((2, 3), ("", plural)) for _ in range(n_nouns)]
    verbs = [word((2, 3), (verb_sg, verb_pl)) for _ in range(n_verbs)]
    adjs = [word((2, 3)) for _ in range(n_adjs)]
    w.update(noun=[f for _, f in nouns], verb=[f for _, f in verbs], adj=[f[0] for _, f in adjs])
    return w, {"noun": [s for s, _ in nouns], "verb": [s for s, _ in verbs], "adj": [s for s, _ in adjs]}


# ----------------------------------------------------------------------------------------- realising
class Realiser:
    """Says a meaning in one language, word by word."""

    def __init__(self, lex: Lexicon, lang: str, word_order: str = "sov"):
        self.lex, self.w = lex, lex.words[lang]
        # "source": the target keeps every source ordering, only its words differ (a relexification)
        self.target = lang == "target" and word_order != "source"
        self.sov = lang == "target" and word_order == "sov"

    def np(self, np: NP) -> list[str]:
        cls, n = self.lex.noun_class[np.noun], int(np.plural)
        if np.pronoun:
            return [self.w["pron"][cls][n]]
        noun, det = self.w["noun"][np.noun][n], self.w["det"][cls][n]
        adj = [self.w["adj"][np.adj]] if np.adj is not None else []
        rel = self.relative(np) if np.rel is not None else []
        return rel + [noun] + adj + [det] if self.target else [det] + adj + [noun] + rel

    def relative(self, head: NP) -> list[str]:
        r, n = head.rel, int(head.plural)
        pron = self.w["rel"][self.lex.noun_class[head.noun]][n]
        neg = [self.w["neg"]] if r.negated else []
        obj = self.np(r.obj) if r.obj is not None else []
        verb = [self.w["verb"][r.verb][n]]
        return obj + verb + neg + [pron] if self.target else [pron] + neg + verb + obj

    def clause(self, c: Clause) -> list[str]:
        subj, n = self.np(c.subject), int(c.subject.plural)
        neg = [self.w["neg"]] if c.negated else []
        if c.verb is None:
            pred, comp = [self.w["cop"][n]], [self.w["adj"][c.adj]]
        else:
            pred, comp = [self.w["verb"][c.verb][n]], self.np(c.obj) if c.obj is not None else []
        if self.sov:
            return subj + comp + pred + neg
        return subj + pred + neg + comp if self.target else subj + neg + pred + comp

    def sentence(self, s: Sentence) -> str:
        words = self.clause(s.clauses[0])
        for conj, c in zip(s.conjunctions, s.clauses[1:]):
            words += [self.w["conj"][conj]] + self.clause(c)
        return " ".join(words)


def _np_length(np: NP | None) -> int:
    if np is None or np.pronoun:
        return int(np is not None)
    rel = 0 if np.rel is None else 2 + np.rel.negated + _np_length(np.rel.obj)
    return 2 + (np.adj is not None) + rel


def sentence_length(s: Sentence) -> int:
    """Words in either language (translation is word for word)."""
    return len(s.clauses) - 1 + sum(_np_length(c.subject) + 1 + c.negated + (
        1 if c.verb is None else _np_length(c.obj)) for c in s.clauses)


# -------------------------------------------------------------------------------------- semantics
def resolved_clauses(s: Sentence) -> list[Clause]:
    """The clauses a sentence asserts, pronouns replaced by their antecedents, relative clauses made
    main clauses: each one a possible hypothesis (or source of one)."""
    bare = lambda np: None if np is None else NP(np.noun, np.plural, None if np.pronoun else np.adj)  # noqa
    out = []
    for c in s.clauses:
        for np in (c.subject, c.obj):
            if np is not None and np.rel is not None:
                out.append(Clause(bare(np), np.rel.verb, bare(np.rel.obj), None, np.rel.negated))
        out.append(Clause(bare(c.subject), c.verb, bare(c.obj), c.adj, c.negated))
    return out


def clause_facts(c: Clause) -> list[tuple]:
    """Atomic facts of a resolved clause: its event or property, plus its modifiers' properties."""
    ent = lambda np: (np.noun, np.plural)  # noqa: E731 - same lemma and number: same entity
    facts = [("prop", ent(np), np.adj) for np in (c.subject, c.obj) if np is not None and np.adj is not None]
    if c.verb is None:  # "X is not big" says "X is small": antonyms (2k, 2k+1) are complementary
        facts.append(("prop", ent(c.subject), c.adj ^ int(c.negated)))
    else:
        facts.append(("event", c.verb, ent(c.subject), None if c.obj is None else ent(c.obj), c.negated))
    return facts


def sentence_facts(s: Sentence) -> list[tuple]:
    return [f for c in resolved_clauses(s) for f in clause_facts(c)]


def fact_status(facts: list[tuple], f: tuple) -> int:
    """ENTAILMENT if `facts` imply f, CONTRADICTION if they imply its negation, else NEUTRAL."""
    if f[0] == "prop":
        for g in facts:
            if g[0] == "prop" and g[1] == f[1] and g[2] >> 1 == f[2] >> 1:
                return ENTAILMENT if g[2] == f[2] else CONTRADICTION
        return NEUTRAL
    _, verb, subj, obj, negated = f
    same = [g for g in facts if g[0] == "event" and g[1] == verb and g[2] == subj]
    for g in same:
        if g[3] == obj:
            return ENTAILMENT if g[4] == negated else CONTRADICTION
    for g in same:  # one event per (verb, subject): doing it to another object rules this one out
        if not g[4] and obj is not None and g[3] is not None:
            return ENTAILMENT if negated else CONTRADICTION
    return NEUTRAL


def judge(premise_facts: list[tuple], hypothesis_facts: list[tuple]) -> int:
    status = [fact_status(premise_facts, f) for f in hypothesis_facts]
    if CONTRADICTION in status:
        return CONTRADICTION
    return ENTAILMENT if all(s == ENTAILMENT for s in status) else NEUTRAL


def consistent(facts: list[tuple]) -> bool:
    return all(fact_status(facts[:i] + facts[i + 1:], f) != CONTRADICTION for i, f in enumerate(facts))


def coherent(clauses: list[Clause]) -> bool:
    """Resolved clauses that do not contradict themselves and do nothing to themselves ("the dog sees
    the dog" would read as a different dog, against the same-entity convention)."""
    reflexive = any(c.obj is not None and (c.obj.noun, c.obj.plural) == (c.subject.noun, c.subject.plural)
                    for c in clauses)
    return not reflexive and consistent([f for c in clauses for f in clause_facts(c)])


# ---------------------------------------------------------------------------------------- sampling
def _draw(items: list, weights):
    """draw(rng): a weighted choice, what rng.choices does without its overhead (sampling is most of
    the generation time)."""
    cum = list(accumulate(weights))
    return lambda rng: items[bisect(cum, rng.random() * cum[-1])]


def _zipf(items: list):
    """Weight 1/rank: a few lemmas are frequent, most are rare, as in natural text."""
    return _draw(items, [1 / (r + 1) for r in range(len(items))])


class Sampler:
    """Random meanings: sentences for the corpora, premise/hypothesis pairs for the task."""

    def __init__(self, lex: Lexicon, rng: random.Random, entity_reuse: float = 0.0):
        self.lex, self.rng = lex, rng
        # Corpora come as documents: a noun drawn for a sentence is, with probability entity_reuse, one
        # the document already mentioned (same class). See `documents`.
        self.entity_reuse = entity_reuse
        self.document: list[list[int]] | None = None  # per noun class, nouns mentioned so far
        self.nouns = [_zipf(ns) for ns in lex.nouns_by_class]
        self.verbs = [_zipf(vs) for vs in lex.verbs_by_subject]
        self.adjs = [_zipf(a) for a in lex.adjs_by_class]
        self.subject_class = _zipf(sorted(range(4), key=lambda k: -len(lex.verbs_by_subject[k])))
        self.n_clauses = _draw(CLAUSE_COUNTS, CLAUSE_WEIGHTS)

    def np(self, cls: int, relative: bool) -> NP:
        r = self.rng
        mentioned = self.document[cls] if self.document is not None else None
        if mentioned and r.random() < self.entity_reuse:
            noun = r.choice(mentioned)
        else:
            noun = self.nouns[cls](r)
        plural = r.random() < P_PLURAL
        adj = self.adjs[cls](r) if r.random() < P_ADJECTIVE else None
        rel = None
        if relative and r.random() < P_RELATIVE:  # its subject is the head noun itself
            rel = self.clause(cls, NP(noun, plural), relative=False)
            rel = rel if rel.verb is not None else None  # relative clauses are events ("that eats ...")
        return NP(noun, plural, adj, rel)

    def clause(self, cls: int | None = None, subject: NP | None = None, relative: bool = True) -> Clause:
        r = self.rng
        cls = cls if cls is not None else self.subject_class(r)
        negated = r.random() < P_NEGATED
        if r.random() < P_COPULA:
            return Clause(subject or self.np(cls, relative), adj=self.adjs[cls](r), negated=negated)
        verb = self.verbs[cls](r)
        obj_cls = self.lex.verb_frame[verb][1]
        obj = None if obj_cls is None else self.np(obj_cls, relative)
        return Clause(subject or self.np(cls, relative), verb, obj, negated=negated)

    def sentence(self) -> Sentence:
        while True:
            s = self._sentence()
            if MIN_WORDS <= sentence_length(s) <= MAX_WORDS and coherent(resolved_clauses(s)):
                return s

    def documents(self, n: int, length: int) -> list[Sentence]:
        """n sentences in documents of ``length`` sentences that keep mentioning their entities.

        Packed training blocks hold consecutive lines, so a masked noun can often be read off an earlier
        mention: as in real text, the model learns to match a word with its earlier occurrence, which
        every sentence-pair task later needs (the premise's subject in the hypothesis)."""
        out = []
        for i in range(n):
            if i % length == 0:
                self.document = [[] for _ in NOUN_CLASSES]
            s = self.sentence()
            for c in s.clauses:
                for np in _nps(c):
                    if np.noun not in self.document[self.lex.noun_class[np.noun]]:
                        self.document[self.lex.noun_class[np.noun]].append(np.noun)
            out.append(s)
        self.document = None
        return out

    def _sentence(self) -> Sentence:
        r, classes = self.rng, self.lex.noun_class
        clauses = [self.clause()]
        for _ in range(self.n_clauses(r) - 1):
            # A pronoun may refer to any earlier noun that is the only one of its class and number,
            # so that the reader (and the model) can resolve it from agreement alone.
            unique = []
            if r.random() < P_PRONOUN:
                nps = {(np.noun, np.plural) for c in clauses for np in _nps(c)}
                keys = Counter((classes[n], p) for n, p in nps)
                unique = sorted((n, p) for n, p in nps if keys[classes[n], p] == 1)
            if unique:
                noun, plural = r.choice(unique)
                clauses.append(self.clause(classes[noun], NP(noun, plural, pronoun=True)))
            else:
                clauses.append(self.clause())
        return Sentence(tuple(clauses), tuple(r.randrange(N_CONJUNCTIONS) for _ in clauses[1:]))

    # Hypothesis moves: each edits a resolved premise clause; `judge` decides the label of the result.
    def _other(self, kind: str, items, current=None):
        """Another item, mostly one the premise mentions, so that substitutions seldom add new words."""
        choices = [x for x in items if x != current]
        known = [x for x in choices if x in self.mentioned[kind]]
        return self.rng.choice(known if known and self.rng.random() < 0.75 else choices or [None])

    def _noun_like(self, np: NP) -> NP | None:
        """Another entity of the same noun class: mostly one of the premise's, in its number there."""
        cls = self.lex.noun_class[np.noun]
        known = [e for e in self.mentioned["entity"]
                 if self.lex.noun_class[e[0]] == cls and e != (np.noun, np.plural)]
        if known and self.rng.random() < 0.75:
            return NP(*self.rng.choice(known))
        return NP(self._other("noun", self.lex.nouns_by_class[cls], np.noun), np.plural)  # >= 4 a class

    def _drop_modifiers(self, c: Clause, p: float = 0.5) -> Clause:
        def drop(np):
            return np if np is None or np.adj is None or self.rng.random() >= p else NP(np.noun, np.plural)
        return Clause(drop(c.subject), c.verb, drop(c.obj), c.adj, c.negated)

    def _negate(self, c):
        return replace(c, negated=not c.negated)

    def _other_object(self, c):
        return c.obj is not None and replace(c, obj=self._noun_like(c.obj))

    def _other_subject(self, c):
        return replace(c, subject=self._noun_like(c.subject))

    def _other_verb(self, c):
        if c.verb is None:
            return None
        frame = self.lex.verb_frame[c.verb]
        verb = self._other("verb", [v for v, f in enumerate(self.lex.verb_frame) if f == frame], c.verb)
        return verb is not None and replace(c, verb=verb)

    def _swap_roles(self, c):
        ok = c.obj is not None and self.lex.noun_class[c.obj.noun] == self.lex.noun_class[c.subject.noun]
        return ok and replace(c, subject=c.obj, obj=c.subject)

    def _add_adjective(self, c):
        key = self.rng.choice(["subject", "obj"] if c.obj is not None else ["subject"])
        np = getattr(c, key)
        adj = self._other("adj", self.lex.adjs_by_class[self.lex.noun_class[np.noun]])
        return replace(c, **{key: replace(np, adj=adj ^ self.rng.randrange(2))})  # or its antonym

    def _copula(self, c):
        """ "X is (not) A" about an entity of the clause, A often from a pair the premise uses."""
        np = self.rng.choice([x for x in (c.subject, c.obj) if x is not None])
        adj = self._other("adj", self.lex.adjs_by_class[self.lex.noun_class[np.noun]])
        if np.adj is not None and self.rng.random() < 0.5:
            adj = np.adj ^ self.rng.randrange(2)
        return Clause(NP(np.noun, np.plural), adj=adj, negated=self.rng.random() < 0.5)

    MOVES = {ENTAILMENT: ("_drop_modifiers", "_copula", "_other_object"),
             CONTRADICTION: ("_negate", "_other_object", "_copula", "_add_adjective"),
             NEUTRAL: ("_other_subject", "_other_subject", "_swap_roles", "_swap_roles", "_other_verb",
                       "_add_adjective", "_copula")}

    def pair(self, label: int, realiser: Realiser) -> tuple[Sentence, Clause]:
        """A premise and a one-clause hypothesis whose facts give `label` against the premise's.

        The number of hypothesis words missing from the premise (0, 1, 2+) is drawn independently of
        the label, so that word overlap says nothing about it."""
        r = self.rng
        new_words = r.randrange(3)
        while True:
            premise = self.sentence()
            facts, clauses = sentence_facts(premise), resolved_clauses(premise)
            text = realiser.sentence(premise)
            nps = [np for c in clauses for np in (c.subject, c.obj) if np is not None]
            # What the premise mentions: the moves prefer these as substitutes.
            self.mentioned = {"noun": {np.noun for np in nps}, "verb": {c.verb for c in clauses},
                              "entity": sorted({(np.noun, np.plural) for np in nps}),
                              "adj": {f[2] for f in facts if f[0] == "prop"}}
            for _ in range(20):
                move = getattr(self, r.choice(self.MOVES[label]))
                h = move(self._drop_modifiers(r.choice(clauses), 0.3))
                if h and r.random() < 0.25:  # negation then marks no label in particular
                    h = self._negate(h)
                if not h or judge(facts, clause_facts(h)) != label or not coherent([h]):
                    continue
                hypothesis = realiser.sentence(Sentence((h,)))
                new = min(2, len(set(hypothesis.split()) - set(text.split())))
                if new == new_words and hypothesis != text:
                    return premise, h


    def first_clause_pair(self, label: int, realiser: Realiser) -> tuple[Sentence, Clause]:
        """A premise and a hypothesis about its first clause (task mode "first_clause").

        The premise's first clause is negated half the time, and the premise names a second entity of
        that clause's subject class. The hypothesis is the first clause, modifiers and relative clauses
        dropped: kept as it is (entailment), with its polarity flipped or, for "X is A", A's antonym
        (contradiction), or said of that second entity (neutral; polarity flipped half the time). So
        new words and negation words are weak cues; deciding the label needs the hypothesis lined up
        with the premise's first clause: its subject, its predicate and its polarity. Every label is
        checked with `judge`."""
        r = self.rng
        while True:
            premise = self.sentence()
            c = replace(premise.clauses[0], negated=r.random() < 0.5)  # polarity: no cue to the label
            premise = Sentence((c,) + premise.clauses[1:], premise.conjunctions)
            subj, cls = (c.subject.noun, c.subject.plural), self.lex.noun_class[c.subject.noun]
            entities = sorted({(np.noun, np.plural) for cl in premise.clauses for np in _nps(cl)})
            known = [e for e in entities if e != subj and self.lex.noun_class[e[0]] == cls]
            if not known or not coherent(resolved_clauses(premise)):
                continue  # every premise names a second entity of its first subject's class
            bare = lambda np: None if np is None else NP(np.noun, np.plural)  # noqa: E731
            h = Clause(bare(c.subject), c.verb, bare(c.obj), c.adj, c.negated)
            if label == CONTRADICTION:
                h = replace(h, adj=h.adj ^ 1) if h.verb is None and r.random() < 0.5 else self._negate(h)
            elif label == NEUTRAL:  # the same predicate about the premise's other entity of that class
                h = replace(h, subject=NP(*r.choice(known)))
                if r.random() < 0.5:
                    h = self._negate(h)
            if coherent([h]) and judge(sentence_facts(premise), clause_facts(h)) == label:
                return premise, h

    def one_clause_pair(self, label: int, realiser: Realiser, premise_negated: float = 0.5
                        ) -> tuple[Sentence, Clause]:
        """A one-clause premise (no relative clause) and a hypothesis about it (task mode "one_clause").

        The premise is negated with probability ``premise_negated``. The hypothesis is the premise
        without its adjectives (entailment); with its polarity flipped or, for "X is A", A's antonym
        (contradiction); or the same predicate said of another entity of the subject's class that the
        premise does not name (neutral; polarity flipped half the time). Easier than "first_clause": a model that matches words across
        the pair without their order can decide it, so surface cues go a long way (see the lexical-overlap
        baseline); the words to match must still mean the same to the model, which is what zero-shot
        transfer to TARGET tests. Every label is checked with `judge`."""
        r = self.rng
        drop_rel = lambda np: None if np is None else NP(np.noun, np.plural, np.adj)  # noqa: E731
        while True:
            c = self.clause(relative=False)
            c = Clause(drop_rel(c.subject), c.verb, drop_rel(c.obj), c.adj, r.random() < premise_negated)
            premise = Sentence((c,))
            if not coherent(resolved_clauses(premise)):
                continue
            bare = lambda np: None if np is None else NP(np.noun, np.plural)  # noqa: E731
            h = Clause(bare(c.subject), c.verb, bare(c.obj), c.adj, c.negated)
            if label == CONTRADICTION:
                h = replace(h, adj=h.adj ^ 1) if h.verb is None and r.random() < 0.5 else self._negate(h)
            elif label == NEUTRAL:
                named = {np.noun for np in _nps(c)}
                others = [n for n in self.lex.nouns_by_class[self.lex.noun_class[c.subject.noun]] if n not in named]
                h = replace(h, subject=NP(r.choice(others), c.subject.plural))
                if r.random() < 0.5:
                    h = self._negate(h)
            if coherent([h]) and judge(sentence_facts(premise), clause_facts(h)) == label:
                return premise, h


def _nps(c: Clause):
    for np in (c.subject, c.obj):
        if np is not None:
            yield np
            if np.rel is not None and np.rel.obj is not None:
                yield np.rel.obj


TASK_MODES = ("controlled", "first_clause", "one_clause")


def task_pairs(lex: Lexicon, rng: random.Random, n: int, mode: str = "controlled",
               premise_negated: float = 0.5) -> list[tuple[Sentence, Clause, int]]:
    """n labelled meaning pairs, labels in equal thirds (within one) in random order."""
    labels = [i % 3 for i in range(n)]
    rng.shuffle(labels)
    sampler, realiser = Sampler(lex, rng), Realiser(lex, "source")
    make = {"controlled": sampler.pair, "first_clause": sampler.first_clause_pair,
            "one_clause": lambda label, rl: sampler.one_clause_pair(label, rl, premise_negated)}[mode]
    return [(*make(label, realiser), label) for label in labels]


def lexical_overlap_baseline(train: list[dict], test: list[dict]) -> float:
    """Accuracy of a surface heuristic: the majority train label per (number of hypothesis words not in
    the premise, which of the 20 most frequent words are among them). It sees word overlap and
    function-word cues (negation, copula) but not meaning; a task it solves is too easy."""
    frequent = {w for w, _ in Counter(w for x in train for w in x["hypothesis"].split()).most_common(20)}

    def key(x):
        new = set(x["hypothesis"].split()) - set(x["premise"].split())
        return min(len(new), 3), tuple(sorted(new & frequent))

    votes: dict = {}
    for x in train:
        votes.setdefault(key(x), Counter())[x["label"]] += 1
    default = Counter(x["label"] for x in train).most_common(1)[0][0]
    hits = sum((votes[key(x)].most_common(1)[0][0] if key(x) in votes else default) == x["label"]
               for x in test)
    return hits / max(1, len(test))


# ------------------------------------------------------------------------------------------ output
def unigram_entropy(lines: list[str]) -> float:
    """Entropy in nats of the word unigram distribution of a corpus."""
    counts = Counter(w for line in lines for w in line.split())
    total = sum(counts.values())
    return -sum(c / total * math.log(c / total) for c in counts.values())


def check_config(cfg: SyntheticConfig) -> None:
    """Every field in range, or a one-line ConfigError naming the flag and the fix."""
    if not MIN_LEXICON <= cfg.lexicon_size <= MAX_LEXICON:
        raise ConfigError(f"--lexicon_size {cfg.lexicon_size}: outside {MIN_LEXICON}..{MAX_LEXICON}; "
                          f"fix: pick a size in that range (default 400)")
    if cfg.task_mode not in TASK_MODES:
        raise ConfigError(f"--task_mode {cfg.task_mode!r}: unknown; fix: use one of {', '.join(TASK_MODES)}")
    if not 0.0 <= cfg.premise_negated <= 1.0:
        raise ConfigError(f"--premise_negated {cfg.premise_negated}: not a probability; fix: give a value in 0..1")
    if cfg.word_order not in WORD_ORDERS:
        raise ConfigError(f"--word_order {cfg.word_order!r}: unknown; fix: use one of {', '.join(WORD_ORDERS)}")
    if not 0.0 <= cfg.entity_reuse <= 1.0:
        raise ConfigError(f"--entity_reuse {cfg.entity_reuse}: not a probability; fix: give a value in 0..1")
    # a corpus needs a train and a test line
    for name, least in (("document_length", 1), ("source_sentences", 2), ("target_sentences", 2),
                        ("parallel_pairs", 1), ("parallel_dev", 1), ("task_train", 1), ("task_test", 1),
                        ("task_dev", 1)):
        if getattr(cfg, name) < least:
            raise ConfigError(f"--{name} {getattr(cfg, name)}: too small; fix: use at least {least}")


def _check(cfg: SyntheticConfig, output_dir: str) -> None:
    check_config(cfg)
    check_replaceable(output_dir, OUTPUT_FILES, "--output")


def generate(cfg: SyntheticConfig, output_dir: str) -> dict:
    """Write the benchmark files of `cfg` into output_dir (atomically) and return the meta dict."""
    _check(cfg, output_dir)
    lex = build_lexicon(cfg.seed, cfg.lexicon_size)
    src, tgt = Realiser(lex, "source"), Realiser(lex, "target", cfg.word_order)
    stream = lambda name: random.Random(f"{cfg.seed}:{name}")  # noqa: E731 - independent samples
    files: dict[str, list[str]] = {}
    for lang, realiser, n in (("source", src, cfg.source_sentences), ("target", tgt, cfg.target_sentences)):
        sampler = Sampler(lex, stream(f"{lang}-corpus"), cfg.entity_reuse)
        lines = [realiser.sentence(s) for s in sampler.documents(n, cfg.document_length)]
        n_test = max(1, n // 20)
        files[f"{lang}.train.txt"], files[f"{lang}.test.txt"] = lines[n_test:], lines[:n_test]
    for name, stream_name, n in (("parallel.tsv", "parallel", cfg.parallel_pairs),
                                 ("parallel.dev.tsv", "parallel-dev", cfg.parallel_dev)):
        sampler = Sampler(lex, stream(stream_name))
        files[name] = [f"{src.sentence(s)}\t{tgt.sentence(s)}" for s in (sampler.sentence() for _ in range(n))]
    files["dictionary.tsv"] = [f"{s}\t{t}" for s, t in zip(lex.forms("source"), lex.forms("target"))]
    files["dictionary.lemmas.tsv"] = [f"{s}\t{t}\t{pos}" for pos in ("noun", "verb", "adj")
                                      for s, t in zip(lex.stems["source"][pos], lex.stems["target"][pos])]
    task = {}
    for split, realiser, n in (("source.train", src, cfg.task_train), ("source.dev", src, cfg.task_dev),
                               ("source.test", src, cfg.task_test), ("target.dev", tgt, cfg.task_dev),
                               ("target.test", tgt, cfg.task_test)):
        task[split] = [{"premise": realiser.sentence(p), "hypothesis": realiser.sentence(Sentence((h,))),
                        "label": y} for p, h, y in task_pairs(lex, stream(f"task-{split}"), n, cfg.task_mode,
                                                                  cfg.premise_negated)]
        files[f"task.{split}.jsonl"] = [json.dumps(x) for x in task[split]]
    train = ("source.train.txt", "target.train.txt")
    meta = {
        "generator": "mmadapt.synthetic",
        "config": asdict(cfg),
        "lines": {name: len(lines) for name, lines in files.items()},
        "vocab": {"source_forms": len(lex.forms("source")), "target_forms": len(lex.forms("target")),
                  "nouns": len(lex.noun_class), "verbs": len(lex.verb_frame),
                  "adjectives": len(lex.adj_class),
                  **{f"{n}_types": len({w for x in files[n] for w in x.split()}) for n in train}},
        "unigram_entropy_nats": {n: round(unigram_entropy(files[n]), 4) for n in train},
        "task_labels": {s: [sum(x["label"] == k for x in v) for k in range(3)] for s, v in task.items()},
        "lexical_overlap_baseline_accuracy": round(
            lexical_overlap_baseline(task["source.train"], task["source.test"]), 4),
        "label_names": ["entailment", "neutral", "contradiction"],
    }
    texts = {name: "".join(line + "\n" for line in lines) for name, lines in files.items()}
    texts["meta.json"] = json.dumps(meta, indent=2) + "\n"
    _write_atomically(output_dir, texts)
    return meta


def _write_atomically(output_dir: str, texts: dict[str, str]) -> None:
    """All files appear together or none do (see mmadapt/outdir.py)."""
    with replaced_directory(output_dir, OUTPUT_FILES) as tmp:
        for name, text in texts.items():
            with open(os.path.join(tmp, name), "w", encoding="utf-8", newline="\n") as f:
                f.write(text)


@dataclass
class GeneratorOutput:
    output_dir: str = _f(None, "directory to write (created; an earlier output of the generator is replaced)",
                         aliases=("--output",))


def main(argv=None) -> int:
    from mmadapt.config import ArgumentParser, add_dataclass_args

    p = ArgumentParser(prog="python -m mmadapt.synthetic", description=__doc__.split("\n\n")[0])
    add_dataclass_args(p, GeneratorOutput, "output")
    add_dataclass_args(p, SyntheticConfig, "language and task")
    args = vars(p.parse_args(argv))
    output = args.pop("output_dir", None)
    try:
        if not output:
            raise ConfigError("--output_dir is missing; fix: pass the directory to write")
        meta = generate(SyntheticConfig(**args), output)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {output}: {json.dumps(meta['lines'])}; entropy {meta['unigram_entropy_nats']}; "
          f"lexical-overlap baseline {meta['lexical_overlap_baseline_accuracy']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
