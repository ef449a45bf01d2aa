"""Sampling meanings: sentences for the corpora (documents whose nouns recur) and the task's pairs."""

from __future__ import annotations

import random
from bisect import bisect
from collections import Counter
from dataclasses import replace
from itertools import accumulate

from .config import (CLAUSE_COUNTS, CLAUSE_WEIGHTS, CONTRADICTION, ENTAILMENT, MAX_WORDS, MIN_WORDS, N_CONJUNCTIONS,
                     NEUTRAL, NOUN_CLASSES, P_ADJECTIVE, P_COPULA, P_NEGATED, P_PLURAL, P_PRONOUN, P_RELATIVE)
from .meanings import (NP, Clause, Sentence, clause_facts, coherent, judge, noun_phrases, resolved_clauses,
                       sentence_facts)
from .lexicon import Lexicon
from .grammar import Realiser, sentence_length


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
                for np in noun_phrases(c):
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
                nps = {(np.noun, np.plural) for c in clauses for np in noun_phrases(c)}
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
            entities = sorted({(np.noun, np.plural) for cl in premise.clauses for np in noun_phrases(cl)})
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
                named = {np.noun for np in noun_phrases(c)}
                others = [n for n in self.lex.nouns_by_class[self.lex.noun_class[c.subject.noun]] if n not in named]
                h = replace(h, subject=NP(r.choice(others), c.subject.plural))
                if r.random() < 0.5:
                    h = self._negate(h)
            if coherent([h]) and judge(sentence_facts(premise), clause_facts(h)) == label:
                return premise, h
