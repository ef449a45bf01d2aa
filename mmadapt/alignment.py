"""How well a set of target embeddings lines up with the source: the dictionary oracle and per-layer
similarity of a sentence and its translation inside the primary model.

Both are diagnostics for the demo's report (why a path stalls where it does), computed in one process
after the stages: the models are small, and they read the stages' outputs from disk.
"""

from __future__ import annotations

import torch

from .evaluators import read_parallel
from .model import masked_mean


def dictionary_embeddings(source_embeddings: torch.Tensor, source_tok, target_tok, dictionary_path: str,
                          seed: int = 0, std: float = 0.02) -> tuple[torch.Tensor, int]:
    """(target rows, words mapped): each target word whose dictionary translation is a source token gets
    that token's source row, the special tokens theirs; the rest are drawn N(0, std) as step 2 starts.

    Swapped into a fine-tuned model, these are the best any step 2 could learn word by word: the
    zero-shot score they give is the ceiling that word order and the task leave to the embeddings."""
    sv, tv = source_tok.get_vocab(), target_tok.get_vocab()
    g = torch.Generator().manual_seed(seed)
    rows = torch.randn(len(target_tok), source_embeddings.shape[1], generator=g) * std
    for special in ("<s>", "<pad>", "</s>", "<unk>", "<mask>"):
        rows[tv[special]] = source_embeddings[sv[special]]
    mapped = 0
    with open(dictionary_path, encoding="utf-8") as fh:
        for line in fh:
            source_word, target_word = line.rstrip("\n").split("\t")[:2]
            s, t = sv.get("▁" + source_word), tv.get("▁" + target_word)
            if s is not None and t is not None:
                rows[t] = source_embeddings[s]
                mapped += 1
    return rows, mapped


@torch.no_grad()
def _layer_means(model, tokenizer, sentences: list, batch_size: int = 64) -> list:
    """Per layer (embeddings first), the mean-pooled hidden state of each sentence: [n, h] tensors."""
    per_layer = None
    for i in range(0, len(sentences), batch_size):
        enc = tokenizer(sentences[i:i + batch_size], truncation=True, max_length=128, padding=True,
                        return_tensors="pt")
        _, states = model.encode(enc["input_ids"], output_hidden_states=True)
        pooled = [masked_mean(x, enc["attention_mask"]) for x in states]
        per_layer = pooled if per_layer is None else [torch.cat([a, b]) for a, b in zip(per_layer, pooled)]
    return per_layer


def _cka(x: torch.Tensor, y: torch.Tensor) -> float:
    """Linear CKA (Kornblith et al. 2019) of two [n, h] representations of the same n items."""
    x, y = x - x.mean(0), y - y.mean(0)
    cross = (x.T @ y).norm() ** 2
    return float(cross / ((x.T @ x).norm() * (y.T @ y).norm()).clamp(min=1e-12))


def layer_similarity(model, source_tok, target_tok, parallel_path: str, target_embeddings: torch.Tensor,
                     limit: int = 300) -> dict:
    """For sentence pairs, per layer 0..L of the primary ``model``: the mean cosine of a source sentence's
    pooled state (source embeddings, as the model is) and its translation's (``target_embeddings``
    plugged in), each side centred as retrieval does; and the linear CKA of the two sides."""
    sources, targets = read_parallel(parallel_path, limit)
    model.eval()
    source_layers = _layer_means(model, source_tok, sources)
    embedding = model.roberta.embeddings.word_embeddings
    original = embedding.weight
    embedding.weight = torch.nn.Parameter(target_embeddings.to(original.dtype), requires_grad=False)
    try:  # only the encoder runs here: the heads, tied to the source rows, are not touched
        target_layers = _layer_means(model, target_tok, targets)
    finally:
        embedding.weight = original
    cosine, cka = [], []
    for s, t in zip(source_layers, target_layers):
        s_c = torch.nn.functional.normalize(s - s.mean(0), dim=-1)
        t_c = torch.nn.functional.normalize(t - t.mean(0), dim=-1)
        cosine.append(float((s_c * t_c).sum(-1).mean()))
        cka.append(_cka(s, t))
    return {"cosine": cosine, "cka": cka}
