"""Meanings (``Sentence`` trees of ``Clause`` and ``NP``) and what they assert: the facts that decide a pair's label."""

from __future__ import annotations

from dataclasses import dataclass

from .config import CONTRADICTION, ENTAILMENT, NEUTRAL


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


def noun_phrases(c: Clause):
    """A clause's noun phrases: subject, object, and a relative clause's object."""
    for np in (c.subject, c.obj):
        if np is not None:
            yield np
            if np.rel is not None and np.rel.obj is not None:
                yield np.rel.obj
