"""Constants of the two languages and the generator's flags, checked."""

from __future__ import annotations

from dataclasses import dataclass

from ..artifacts import PairDir
from ..config import _f
from ..errors import ConfigError


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
TASK_MODES = ("controlled", "first_clause", "one_clause")
OUTPUT_FILES = PairDir.files()  # named in one place: the demo and its analysis read them back


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
