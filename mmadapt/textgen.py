"""Built-in text for smoke runs: small seeded sentences with agreement, so a masked word is guessable."""

from __future__ import annotations

import random

SUBJECTS = {"sg": ["the cat", "a dog", "the farmer", "my sister", "the old man", "a child", "the teacher"],
            "pl": ["the cats", "two dogs", "the farmers", "my sisters", "the children", "some teachers"]}
VERBS = {"sg": ["sees", "likes", "finds", "helps", "follows", "feeds"],
         "pl": ["see", "like", "find", "help", "follow", "feed"]}
OBJECTS = ["the bird", "a small fish", "the red apple", "our neighbour", "the garden", "a green bottle",
           "the river", "an empty house"]
PLACES = ["in the morning", "near the river", "after dinner", "at the market", "every day", "in winter"]
PRONOUN = {"sg": "it is", "pl": "they are"}


def sentence(rng: random.Random) -> str:
    number = rng.choice(("sg", "pl"))
    s = f"{rng.choice(SUBJECTS[number])} {rng.choice(VERBS[number])} {rng.choice(OBJECTS)}"
    if rng.random() < 0.5:
        s += f" {rng.choice(PLACES)}"
    if rng.random() < 0.4:
        s += f" because {PRONOUN[number]} {rng.choice(['hungry', 'kind', 'bored', 'curious'])}"
    return s + "."


def write_corpus(path: str, sentences: int, seed: int = 0) -> int:
    rng = random.Random(seed)
    with open(path, "w", encoding="utf-8") as fh:
        for _ in range(sentences):
            fh.write(sentence(rng) + "\n")
    return sentences
