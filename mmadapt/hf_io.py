"""Hugging Face format in and out: XLM-R/RoBERTa MLM directories <-> our state dicts.

Our parameter names are Hugging Face's, except the tied projection (``lm_head.decoder_weight`` here,
``lm_head.decoder.weight`` there) and the mini head, which Hugging Face's class has no place for: it is
saved beside the model as ``mini_head.safetensors`` with our model config in ``mmadapt_model.json``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from collections.abc import Mapping
from typing import Optional

import torch

from .config import ModelConfig
from .errors import ConfigError

MINI_HEAD_FILE = "mini_head.safetensors"
MODEL_CONFIG_FILE = "mmadapt_model.json"
SUPPORTED_TYPES = ("xlm-roberta", "roberta")
# A mean-pooled task model's export ships this module's source (modeling_mmadapt_pooling.py) beside its weights.
MEAN_POOLING_MODULE = "modeling_mmadapt_pooling"
MEAN_POOLING_CLASSES = {"AutoConfig": "MeanPooledXLMRobertaConfig",
                        "AutoModelForSequenceClassification": "MeanPooledXLMRobertaForSequenceClassification"}
# What an export writes (tokenizer files aside): an existing output holding anything else is refused.
EXPORT_FILES = ("config.json", "model.safetensors", "generation_config.json", MINI_HEAD_FILE, MODEL_CONFIG_FILE,
                MEAN_POOLING_MODULE + ".py")


def is_pretrained_ref(name: str) -> bool:
    """A directory on disk, or a hub-style name ("org/model"); presets are neither."""
    return os.path.isdir(name) or ("/" in name and not name.startswith((".", "/")))


def read_pretrained_arch(path: str) -> dict:
    """Architecture fields of a Hugging Face MLM directory, checked to be one we can run."""
    from transformers import AutoConfig

    if os.path.exists(path) and not os.path.isfile(os.path.join(path, "config.json")):
        raise ConfigError(f"--model {path}: no config.json; fix: point at a Hugging Face model directory "
                          "(or an mmadapt export dir)")
    try:
        hf = AutoConfig.from_pretrained(path)
    except Exception as exc:  # noqa: BLE001 - offline hub misses, bad JSON: all one kind of user error
        raise ConfigError(f"--model {path}: cannot read its config ({type(exc).__name__}); fix: give a local "
                          "Hugging Face model directory (hub names need network access)") from None
    if hf.model_type not in SUPPORTED_TYPES:
        raise ConfigError(f"--model {path}: model_type {hf.model_type!r} is not XLM-R/RoBERTa; fix: use an "
                          "XLMRobertaForMaskedLM or RobertaForMaskedLM checkpoint")
    if getattr(hf, "hidden_act", "gelu") != "gelu" or \
            getattr(hf, "position_embedding_type", "absolute") not in (None, "absolute"):
        raise ConfigError(f"--model {path}: needs gelu and absolute positions (has {hf.hidden_act}, "
                          f"{hf.position_embedding_type}); fix: use a standard XLM-R/RoBERTa checkpoint")
    arch = dict(vocab_size=hf.vocab_size, hidden_size=hf.hidden_size, num_layers=hf.num_hidden_layers,
                num_heads=hf.num_attention_heads, intermediate_size=hf.intermediate_size,
                max_position_embeddings=hf.max_position_embeddings)
    # Dropout and init scale come from the checkpoint too: stages after pretraining (step 2,
    # fine-tuning) train as the model was pretrained unless told otherwise.
    extras = dict(type_vocab_size=hf.type_vocab_size, layer_norm_eps=hf.layer_norm_eps,
                  pad_token_id=hf.pad_token_id, hidden_dropout=hf.hidden_dropout_prob,
                  attention_dropout=hf.attention_probs_dropout_prob, initializer_range=hf.initializer_range)
    ours = os.path.join(path, MODEL_CONFIG_FILE)
    if os.path.isfile(ours):
        with open(ours, encoding="utf-8") as fh:
            saved = json.load(fh)
        extras.update(mini_head=saved["mini_head"], mini_layers=saved["mini_layers"])
    return {"arch": arch, "extras": extras}


def hf_config(cfg: ModelConfig, config_class=None):
    """Hugging Face's config of our model (``config_class``: an XLMRobertaConfig subclass instead)."""
    from transformers import XLMRobertaConfig

    return (config_class or XLMRobertaConfig)(
        vocab_size=cfg.vocab_size, hidden_size=cfg.hidden_size, num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads, intermediate_size=cfg.intermediate_size,
        max_position_embeddings=cfg.max_position_embeddings, type_vocab_size=cfg.type_vocab_size,
        layer_norm_eps=cfg.layer_norm_eps, hidden_dropout_prob=cfg.hidden_dropout,
        attention_probs_dropout_prob=cfg.attention_dropout, initializer_range=cfg.initializer_range,
        pad_token_id=cfg.pad_token_id, bos_token_id=0, eos_token_id=2, hidden_act="gelu",
        tie_word_embeddings=True)


def from_hf_state_dict(hf_sd: dict) -> dict:
    return {_our_name(name): tensor for name, tensor in hf_sd.items() if _our_name(name) is not None}


class LazyStateDict(Mapping):
    """Our state dict of a Hugging Face directory's safetensors files, read one tensor at a time on access.

    Step 2 through the mini-model needs only the embeddings, layers 1..k and the mini head; the ZeRO-3
    evaluation model takes the rest one parameter at a time into its partitions; checksums hash tensor
    by tensor. So no process ever holds the whole primary model just to load it (XLM-R XL: 14 GB)."""

    def __init__(self, where: dict):
        self._where = where  # our name -> (file, name in that file)

    @classmethod
    def open(cls, path: str) -> Optional["LazyStateDict"]:
        """None when the directory has no safetensors weights (a .bin checkpoint, a hub name)."""
        from safetensors import safe_open

        index = os.path.join(path, "model.safetensors.index.json")
        if os.path.isfile(index):
            with open(index, encoding="utf-8") as fh:
                files = sorted({os.path.join(path, f) for f in json.load(fh)["weight_map"].values()})
        elif os.path.isfile(os.path.join(path, "model.safetensors")):
            files = [os.path.join(path, "model.safetensors")]
        else:
            return None
        where = {}
        for file in files:
            with safe_open(file, "pt") as fh:
                for name in fh.keys():
                    ours = _our_name(name)
                    if ours is not None:
                        where[ours] = (file, name)
        if "lm_head.decoder_weight" not in where and "roberta.embeddings.word_embeddings.weight" in where:
            where["lm_head.decoder_weight"] = where["roberta.embeddings.word_embeddings.weight"]  # tied
        mini = os.path.join(path, MINI_HEAD_FILE)
        if os.path.isfile(mini):
            with safe_open(mini, "pt") as fh:
                where.update({f"mini_head.{k}": (mini, k) for k in fh.keys()})
        return cls(where)

    def __getitem__(self, name: str) -> torch.Tensor:
        from safetensors import safe_open

        file, key = self._where[name]
        with safe_open(file, "pt") as fh:
            return fh.get_tensor(key).float()

    def __iter__(self):
        return iter(self._where)

    def __len__(self) -> int:
        return len(self._where)

    def select(self, keep) -> "LazyStateDict":
        return LazyStateDict({k: v for k, v in self._where.items() if keep(k)})


def _our_name(hf_name: str) -> Optional[str]:
    """Our parameter name for a Hugging Face MLM weight name (None: not part of our model)."""
    if hf_name == "lm_head.decoder.weight":
        return "lm_head.decoder_weight"
    if hf_name == "lm_head.decoder.bias" or hf_name.startswith("roberta.pooler."):
        return None  # tied to lm_head.bias / not part of an MLM
    if hf_name.endswith(("position_ids", "token_type_ids")):
        return None  # buffers some versions saved
    return hf_name


def select_keys(state_dict, keep) -> Mapping:
    """The entries whose name ``keep`` accepts, without reading the others (lazy dicts stay lazy)."""
    if isinstance(state_dict, LazyStateDict):
        return state_dict.select(keep)
    return {k: v for k, v in state_dict.items() if keep(k)}


def load_pretrained_state_dict(path: str) -> Mapping:
    """Our state dict of a Hugging Face MLM directory (or hub name), mini head included if saved: read
    tensor by tensor from its safetensors files when it has them (see LazyStateDict), else in full."""
    from safetensors.torch import load_file
    from transformers import AutoModelForMaskedLM

    lazy = LazyStateDict.open(path) if os.path.isdir(path) else None
    if lazy is not None:
        return lazy
    hf_model = AutoModelForMaskedLM.from_pretrained(path, dtype=torch.float32)
    sd = from_hf_state_dict(hf_model.state_dict())
    mini = os.path.join(path, MINI_HEAD_FILE)
    if os.path.isfile(mini):
        sd.update({f"mini_head.{k}": v for k, v in load_file(mini).items()})
    return sd


def load_into(model: torch.nn.Module, sd: dict, strict_prefixes: tuple = ("roberta.", "lm_head.")) -> None:
    """Copy ``sd`` into ``model``, gathering ZeRO-3 partitions one parameter at a time.

    Every parameter under ``strict_prefixes`` must be present with the same shape; others (a mini head
    a plain checkpoint lacks) keep their fresh initialisation.
    """
    import deepspeed

    for name, param in model.named_parameters(remove_duplicate=False):
        if name.endswith("decoder_weight"):
            continue  # tied: loaded as the word embeddings
        if name not in sd:
            if name.startswith(strict_prefixes):
                raise ConfigError(f"pretrained weights lack {name}; fix: use a complete XLM-R/RoBERTa "
                                  "MLM checkpoint")
            continue
        src = sd[name]
        full_shape = tuple(getattr(param, "ds_shape", param.shape))
        if tuple(src.shape) != full_shape:
            raise ConfigError(f"pretrained {name} has shape {tuple(src.shape)}, the model needs "
                              f"{full_shape}; fix: drop the size overrides that disagree")
        if hasattr(param, "ds_id"):
            with deepspeed.zero.GatheredParameters([param], modifier_rank=0):
                if not torch.distributed.is_initialized() or torch.distributed.get_rank() == 0:
                    param.data.copy_(src)
        else:
            with torch.no_grad():
                param.copy_(src)


def export_hf(state_dict: dict, cfg: ModelConfig, out_dir: str, tokenizer_dir: Optional[str] = None) -> str:
    """Write a Hugging Face MLM directory (plus mini head and our config) atomically."""
    from safetensors.torch import save_file
    from transformers import XLMRobertaForMaskedLM

    from .outdir import replaced_directory
    from .tokenizer import TOKENIZER_FILES

    with replaced_directory(out_dir, EXPORT_FILES + TOKENIZER_FILES) as tmp:
        hf_model = XLMRobertaForMaskedLM(hf_config(cfg))
        hf_sd = {("lm_head.decoder.weight" if k == "lm_head.decoder_weight" else k): v
                 for k, v in state_dict.items() if k.startswith(("roberta.", "lm_head."))}
        hf_sd["lm_head.decoder.bias"] = state_dict["lm_head.bias"]
        missing, unexpected = hf_model.load_state_dict(hf_sd, strict=False)
        missing = [m for m in missing if not m.endswith(("position_ids", "token_type_ids"))]
        if missing or unexpected:
            raise RuntimeError(f"export: missing {missing}, unexpected {unexpected}")
        hf_model.save_pretrained(tmp)
        mini = {k[len("mini_head."):]: v.contiguous() for k, v in state_dict.items()
                if k.startswith("mini_head.") and not k.endswith("decoder_weight")}
        if mini:
            save_file(mini, os.path.join(tmp, MINI_HEAD_FILE))
        with open(os.path.join(tmp, MODEL_CONFIG_FILE), "w", encoding="utf-8") as fh:
            json.dump(dataclasses.asdict(cfg), fh, indent=2)
        if tokenizer_dir:
            from transformers import AutoTokenizer
            AutoTokenizer.from_pretrained(tokenizer_dir).save_pretrained(tmp)
    return out_dir


def pretrained_model_config(path: str, **overrides) -> ModelConfig:
    """The resolved ModelConfig of a pretrained directory (mini head settings from our own exports)."""
    from .config import resolve_model

    info = read_pretrained_arch(path)
    extras = dict(info["extras"])
    extras.setdefault("mini_head", False)
    extras.update(overrides)
    return resolve_model(ModelConfig(model=path, **extras), pretrained=info["arch"])


def export_adapted_task_model(finetuned_dir: str, pack_dir: str, out_dir: str, which: str = "best") -> str:
    """A fine-tuned task model with a language pack swapped in, as a plain Hugging Face directory:
    ``AutoModelForSequenceClassification`` (pair tasks, and classify with its N labels named "0".."N-1") or
    ``AutoModelForQuestionAnswering`` (MLQA) loads it, with the target tokenizer beside it. Refused: a pack of
    another source model."""
    from .artifacts import RunDir, load_finetuned, load_pack
    from .outdir import replaced_directory
    from .packs import check_pack_source
    from .tokenizer import TOKENIZER_FILES, load_tokenizer

    spec, model, _, meta = load_finetuned(finetuned_dir, "--finetuned")
    tensors, pack_meta = load_pack(pack_dir, which)
    check_pack_source(pack_meta, meta["source_checksum"], f"--finetuned {finetuned_dir}")
    target_tok = load_tokenizer(RunDir(pack_dir).tokenizer)
    cfg = dataclasses.replace(ModelConfig(**meta["model_config"]), vocab_size=tensors["word_embeddings"].shape[0])
    hf_model, remote_code = _hf_task_model(spec, cfg, meta.get("pooling", "cls"))
    state = dict(model.state_dict())
    state["roberta.embeddings.word_embeddings.weight"] = tensors["word_embeddings"]
    missing, unexpected = hf_model.load_state_dict(state, strict=False)
    missing = [m for m in missing if not m.endswith(("position_ids", "token_type_ids"))]
    if missing or unexpected:
        raise RuntimeError(f"export: missing {missing}, unexpected {unexpected}")
    with replaced_directory(out_dir, EXPORT_FILES + TOKENIZER_FILES, "--output_dir") as tmp:
        hf_model.save_pretrained(tmp)
        if remote_code:
            shutil.copyfile(remote_code, os.path.join(tmp, MEAN_POOLING_MODULE + ".py"))
        target_tok.save_pretrained(tmp)
    return out_dir


def _hf_task_model(spec, cfg: ModelConfig, pooling: str):
    """(the Hugging Face model for a task, the file of its modeling code or None when transformers has it).

    <s> pooling is transformers' own XLMRobertaForSequenceClassification. Mean pooling is a subclass (with a
    config type of its own) whose source, ``modeling_mmadapt_pooling.py``, travels with the export, named in
    the config's ``auto_map``: loading it needs ``trust_remote_code=True``."""
    from transformers import XLMRobertaForQuestionAnswering, XLMRobertaForSequenceClassification

    if not spec.classifies:
        hf = hf_config(cfg)
        hf.num_labels = 2
        return XLMRobertaForQuestionAnswering(hf), None
    module = None
    if pooling == "cls":
        model_class, hf = XLMRobertaForSequenceClassification, hf_config(cfg)
    else:
        from . import modeling_mmadapt_pooling as module

        model_class = getattr(module, MEAN_POOLING_CLASSES["AutoModelForSequenceClassification"])
        hf = hf_config(cfg, getattr(module, MEAN_POOLING_CLASSES["AutoConfig"]))
        hf.auto_map = {auto: f"{MEAN_POOLING_MODULE}.{name}" for auto, name in MEAN_POOLING_CLASSES.items()}
    hf.num_labels = len(spec.labels)
    hf.id2label = dict(enumerate(spec.labels))
    hf.label2id = {name: i for i, name in enumerate(spec.labels)}
    return model_class(hf), (module.__file__ if module else None)


def export_adapted_mlm(model_path: str, pack_dir: str, out_dir: str, which: str = "best") -> str:
    """The pretrained primary model with a language pack's embeddings and head bias: a target-language
    masked LM that ``AutoModelForMaskedLM`` and ``pipeline("fill-mask")`` load (the mini head, which has
    no target bias, is left out)."""
    from .artifacts import RunDir, load_pack
    from .packs import body_checksum, check_pack_source

    cfg = pretrained_model_config(model_path)
    state = dict(load_pretrained_state_dict(model_path))
    tensors, pack_meta = load_pack(pack_dir, which)
    check_pack_source(pack_meta, body_checksum(state), f"--run_dir {model_path}")
    state = {k: v for k, v in state.items() if not k.startswith("mini_head.")}
    state["roberta.embeddings.word_embeddings.weight"] = state["lm_head.decoder_weight"] = tensors["word_embeddings"]
    state["lm_head.bias"] = tensors["head_bias"]
    cfg = dataclasses.replace(cfg, vocab_size=tensors["word_embeddings"].shape[0], mini_head=False, mini_layers=None)
    return export_hf(state, cfg, out_dir, RunDir(pack_dir).tokenizer)
