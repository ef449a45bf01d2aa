"""Language packs and the checksums that keep models, mini-models and packs from being mixed up.

A language pack is what step 2 produces for one target language: the token-embedding matrix, the MLM
head's bias over the new vocabulary, the tokenizer, and ``pack.json`` (which source model it belongs
to, which path trained it, steps, FLOPs). Step 4 swaps it into a fine-tuned model of that source.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from typing import Iterable, Optional

import torch

from .errors import ConfigError

EMBEDDINGS_FILE = "embeddings.safetensors"
BEST_EMBEDDINGS_FILE = "best_embeddings.safetensors"
PACK_META = "pack.json"
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
    import deepspeed

    params = dict(module.named_parameters())
    h = hashlib.sha256()
    for name in sorted(names):
        p = params[name]
        if hasattr(p, "ds_id"):
            with deepspeed.zero.GatheredParameters([p]):
                _update(h, name, p)
        else:
            _update(h, name, p)
    return h.hexdigest()[:24]


def body_checksum(state_dict: dict) -> str:
    """Identity of a source model: all its weights but the language-specific ones and the mini head."""
    names = [n for n in state_dict if n.startswith(("roberta.", "lm_head.")) and n not in LANGUAGE_SPECIFIC]
    return checksum(state_dict, names)


def shared_bottom_names(state_dict: dict, layers: int) -> list:
    """The embeddings and bottom ``layers`` layers: what a mini-model shares with its primary model."""
    prefixes = ("roberta.embeddings.",) + tuple(f"roberta.encoder.layer.{i}." for i in range(layers))
    return [n for n in state_dict if n.startswith(prefixes)]


def save_pack(out_dir: str, embeddings: torch.Tensor, head_bias: torch.Tensor, tokenizer_dir: str,
              meta: dict, filename: str = EMBEDDINGS_FILE) -> None:
    from safetensors.torch import save_file

    os.makedirs(out_dir, exist_ok=True)
    tmp = os.path.join(out_dir, filename + ".tmp")
    save_file({"word_embeddings": embeddings.contiguous(), "head_bias": head_bias.contiguous()}, tmp)
    os.replace(tmp, os.path.join(out_dir, filename))
    tok_dst = os.path.join(out_dir, "tokenizer")
    if os.path.abspath(tokenizer_dir) != os.path.abspath(tok_dst) and not os.path.isdir(tok_dst):
        shutil.copytree(tokenizer_dir, tok_dst)
    meta_path = os.path.join(out_dir, PACK_META)
    with open(meta_path + ".tmp", "w", encoding="utf-8") as fh:
        json.dump(meta, fh, indent=2)
    os.replace(meta_path + ".tmp", meta_path)


def load_pack(pack_dir: str, which: str = "best") -> tuple[dict, dict]:
    """(tensors, meta) of a pack; ``which`` is "best" (by the run's selection metric) or "last"."""
    from safetensors.torch import load_file

    meta_path = os.path.join(pack_dir, PACK_META)
    if not os.path.isfile(meta_path):
        raise ConfigError(f"--language_pack {pack_dir}: no {PACK_META}; fix: point at a step-2 --output_dir")
    with open(meta_path, encoding="utf-8") as fh:
        meta = json.load(fh)
    name = BEST_EMBEDDINGS_FILE if which == "best" and os.path.isfile(
        os.path.join(pack_dir, BEST_EMBEDDINGS_FILE)) else EMBEDDINGS_FILE
    return load_file(os.path.join(pack_dir, name)), meta


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
