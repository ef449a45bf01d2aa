"""Realising a meaning as SOURCE or TARGET words: each language's orders, agreement and inflection."""

from __future__ import annotations

from .meanings import NP, Clause, Sentence
from .lexicon import Lexicon


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
