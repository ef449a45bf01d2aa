"""Swapping a language into a model, and the checksums that keep models, mini-models and language
packs from being mixed up.

A language pack (written and read by mmadapt/artifacts.py) is what step 2 produces for one target
language: the token-embedding matrix, the MLM head's bias over the new vocabulary, the tokenizer, and
which source model it belongs to (its ``body_checksum``). Step 4 swaps it into a fine-tuned model of
that source with ``swap_language``.
"""

from __future__ import annotations

import hashlib
from typing import Iterable, Optional

import torch

from .errors import ConfigError

WORD_EMBEDDINGS = "roberta.embeddings.word_embeddings.weight"
# Parameters a language swaps; everything else of the primary model is its "body".
LANGUAGE_SPECIFIC = (WORD_EMBEDDINGS, "lm_head.bias", "lm_head.decoder_weight")


def _update(h, name: str, tensor: torch.Tensor) -> None:
    h.update(name.encode())
    h.update(tensor.detach().to(torch.float32).contiguous().cpu().numpy().tobytes())


def checksum(state_dict: dict, names: Iterable[str]) -> str:
    h = hashlib.sha256()
    for name in sorted(names):
        _update(h, name, state_dict[name])
    return h.hexdigest()[:24]


def module_checksum(module: torch.nn.Module, names: Iterable[str]) -> str:
    """``checksum`` of a live module's parameters, gathering ZeRO-3 partitions one at a time."""
    from .engine import full_copies

    params = dict(module.named_parameters())
    h = hashlib.sha256()
    for name in sorted(names):
        _update(h, name, full_copies([params[name]])[0])
    return h.hexdigest()[:24]


def body_checksum(state_dict: dict) -> str:
    """Identity of a source model: all its weights but the language-specific ones and the mini head."""
    names = [n for n in state_dict if n.startswith(("roberta.", "lm_head.")) and n not in LANGUAGE_SPECIFIC]
    return checksum(state_dict, names)


def shared_bottom_names(state_dict: dict, layers: int) -> list:
    """The embeddings and bottom ``layers`` layers: what a mini-model shares with its primary model."""
    prefixes = ("roberta.embeddings.",) + tuple(f"roberta.encoder.layer.{i}." for i in range(layers))
    return [n for n in state_dict if n.startswith(prefixes)]


def check_pack_source(pack_meta: dict, source_checksum: str, where: str) -> None:
    if pack_meta.get("source_checksum") != source_checksum:
        raise ConfigError(f"--language_pack was trained for source model {pack_meta.get('source_model')} "
                          f"(checksum {pack_meta.get('source_checksum')}), but {where} comes from another "
                          f"(checksum {source_checksum}); fix: run step 2 on the model you fine-tuned")


def swap_language(model: torch.nn.Module, tensors: dict, head: Optional[torch.nn.Module] = None) -> None:
    """Put a pack's embeddings (and, if the model has an MLM head, its bias) into ``model`` in place."""
    emb = model.roberta.embeddings.word_embeddings
    new = tensors["word_embeddings"]
    emb.weight = torch.nn.Parameter(new.clone().to(emb.weight.dtype), requires_grad=emb.weight.requires_grad)
    emb.num_embeddings = new.shape[0]
    for h in [head] if head is not None else [getattr(model, "lm_head", None), getattr(model, "head", None)]:
        if h is not None and hasattr(h, "decoder_weight"):
            h.decoder_weight = emb.weight
            h.bias = torch.nn.Parameter(tensors["head_bias"].clone(), requires_grad=h.bias.requires_grad)
