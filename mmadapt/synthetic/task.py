"""The sentence-pair task: labelled pairs in the XNLI schema, and the lexical-overlap baseline."""

from __future__ import annotations

import random
from collections import Counter

from .meanings import Clause, Sentence
from .lexicon import Lexicon
from .grammar import Realiser
from .sampler import Sampler


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
