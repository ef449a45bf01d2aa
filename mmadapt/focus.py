"""FOCUS (Dobler and de Melo, EMNLP 2023): step 2's ``--init focus`` start for a new vocabulary.

A target token whose string the source vocabulary also has starts as a copy of its source row and head
bias. Every other target token starts as a convex combination of those overlapping tokens' source rows
(and biases), weighted by sparsemax over the cosine similarities between static fastText embeddings of
the new token and of the overlapping tokens, trained on the target text alone (tokenized with the target
tokenizer). A token fastText has no vector for (seen fewer than ``min_count`` times) keeps the
``--init normal`` row and a zero bias, and is counted.

Why our own 100 lines and not the authors' ``deepfocus`` 1.0.1 (read for this module; its method and its
fastText settings are kept: CBOW, dim 100, 3 epochs, 10 negatives, min count 10, exact string overlap):
its ``FOCUS()`` trains fastText on every core without a seed, so two runs (or two ranks) get different
matrices; it caches the tokenized text and the model under ~/.cache keyed by the text's *path*, so an
edited file at the same path silently reuses a stale model; it draws fallback rows from N(source mean,
source std), not step 2's N(0, std); it returns no head bias and no counts; and it pulls in fastdist
(numba) and print-on-steroids, which nothing else here needs. We use the maintained pieces it is built
on: fastText (the ``fasttext-modern`` wheel, so nothing compiles at install) and ``entmax.sparsemax``.
The one difference from deepfocus's fastText call is a 200k n-gram hash table instead of 2M (80 MB
instead of 800 MB per rank; only the target vocabulary's pieces are looked up).
"""

from __future__ import annotations

import os
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from typing import Iterable

import torch

from .errors import ConfigError

FASTTEXT = dict(model="cbow", dim=100, epoch=3, neg=10, bucket=200_000, thread=1, verbose=0)
CHUNK = 1024  # new tokens per sparsemax batch: bounds the similarity matrix's memory


@dataclass
class FocusStart:
    embeddings: torch.Tensor
    bias: torch.Tensor
    copied: int
    combined: int
    fallen_back: int
    seconds: float

    def report(self) -> dict:
        """What pack.json and summary.json record: the counts and the one-time cost, apart from step 2's."""
        return {"copied": self.copied, "combined": self.combined, "fallen_back": self.fallen_back,
                "seconds": round(self.seconds, 3)}


def shared_pieces(target_tok, source_tok, source_rows: int) -> dict:
    """Target id -> source id of every target piece whose exact string the source vocabulary has."""
    source_vocab = source_tok.get_vocab()
    return {tid: source_vocab[piece] for piece, tid in target_tok.get_vocab().items()
            if source_vocab.get(piece, source_rows) < source_rows}


def check_overlap(shared: dict, target_tok, target_name: str, source_name: str) -> None:
    specials = set(target_tok.all_special_ids)
    if not set(shared) - specials:
        raise ConfigError(f"--init focus: the target tokenizer {target_name} shares no token string with the "
                          f"source tokenizer {source_name} (special tokens aside), so no new token has a "
                          "neighbour; fix: pass the model's tokenizer as --source_tokenizer, or use --init normal")


def tokenized_counts(texts: Iterable[str], target_tok, path: str) -> Counter:
    """Write the texts as space-separated target pieces (fastText's input) and count the pieces."""
    counts = Counter()
    with open(path, "w", encoding="utf-8") as fh:
        for text in texts:
            pieces = target_tok.tokenize(text)
            counts.update(pieces)
            fh.write(" ".join(pieces) + "\n")
    return counts


def static_vectors(path: str, pieces: list, min_count: int) -> dict:
    """fastText vectors of the pieces it kept, trained on one thread from fastText's fixed seed (its
    ``train_unsupervised`` takes none: always 0): the same vectors on every run and rank."""
    import fasttext

    model = fasttext.train_unsupervised(path, minCount=min_count, **FASTTEXT)
    kept = set(model.words)
    return {p: torch.from_numpy(model.get_word_vector(p).copy()) for p in pieces if p in kept}


def sparse_weights(new: torch.Tensor, neighbours: torch.Tensor) -> torch.Tensor:
    """Sparsemax over cosine similarities: each row non-negative, summing to 1, mostly exact zeros."""
    from entmax import sparsemax

    neighbours = torch.nn.functional.normalize(neighbours.double(), dim=1)
    out = [sparsemax(torch.nn.functional.normalize(chunk.double(), dim=1) @ neighbours.T, dim=-1)
           for chunk in new.split(CHUNK)]
    return torch.cat(out) if out else torch.zeros(0, len(neighbours), dtype=torch.float64)


def focus_start(normal_rows: torch.Tensor, source_rows: torch.Tensor, source_bias: torch.Tensor, target_tok,
                source_tok, texts: Iterable[str], min_count: int,
                names: tuple = ("--tokenizer", "--source_tokenizer")) -> FocusStart:
    """FOCUS's start for the target vocabulary. ``normal_rows`` are the ``--init normal`` rows (drawn from
    the run's seed), kept by the tokens that fall back; ``texts`` the target text; ``names`` name the two
    tokenizers in errors."""
    start = time.perf_counter()
    shared = shared_pieces(target_tok, source_tok, source_rows.shape[0])
    check_overlap(shared, target_tok, *names)
    emb, bias = normal_rows.clone(), torch.zeros(len(normal_rows))
    for tid, sid in shared.items():
        emb[tid], bias[tid] = source_rows[sid], source_bias[sid]

    specials = set(target_tok.all_special_tokens)
    id_to_piece = {tid: piece for piece, tid in target_tok.get_vocab().items() if tid < len(emb)}
    with tempfile.TemporaryDirectory(prefix="mmadapt-focus-") as tmp:
        path = os.path.join(tmp, "target.tok")
        counts = tokenized_counts(texts, target_tok, path)
        if not counts:
            raise ConfigError("--init focus: the target text (--train_files) holds no tokens; fix: give text in "
                              "the target language")
        wanted = [p for p in id_to_piece.values() if counts[p] >= min_count and p not in specials]
        vectors = static_vectors(path, wanted, min_count) if wanted else {}
    neighbours = sorted(tid for tid in shared if id_to_piece.get(tid) in vectors)
    if not neighbours:
        raise ConfigError(f"--init focus: none of the {len(shared)} tokens {names[0]} shares with {names[1]} "
                          f"occurs {min_count} times in the target text, so no new token has a neighbour; fix: "
                          "give more target text or lower --focus_min_count")
    new = sorted(tid for tid in id_to_piece if tid not in shared and id_to_piece[tid] in vectors)
    if new:
        weights = sparse_weights(torch.stack([vectors[id_to_piece[t]] for t in new]),
                                 torch.stack([vectors[id_to_piece[t]] for t in neighbours]))
        sids = torch.tensor([shared[t] for t in neighbours])
        emb[new] = (weights @ source_rows[sids].double()).to(emb.dtype)
        bias[new] = (weights @ source_bias[sids].double()).to(bias.dtype)
    fallen_back = len(id_to_piece) - len(shared) - len(new)
    return FocusStart(emb, bias, len(shared), len(new), fallen_back, time.perf_counter() - start)
