"""The lexicon: made-up lemmas in four noun classes, one form per language, from disjoint alphabets."""

from __future__ import annotations

import random
from dataclasses import dataclass

from .config import ALPHABETS, NOUN_CLASSES, N_CONJUNCTIONS


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
