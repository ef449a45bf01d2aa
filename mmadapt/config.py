"""Typed configuration: dataclass sections, size presets, flat ``--field`` CLI overrides, validation.

Every field's ``help`` metadata becomes its ``--help`` line. A run's resolved config is printed at
start-up and saved as ``run_config.json`` next to its checkpoints.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
from dataclasses import dataclass, field, fields
from typing import Any, Optional, get_args, get_origin, get_type_hints

from .errors import ConfigError

XLMR_VOCAB = 250002


def _f(default, help: str, **kw):
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata={"help": help, **kw})
    return field(default=default, metadata={"help": help, **kw})


@dataclass
class ModelConfig:
    """XLM-R/RoBERTa-architecture encoder with an optional MiniJoint head."""

    model: str = _f("tiny", "size preset (tiny, small, xlmr-base, xlmr-large, xlmr-xl, xlmr-xxl) or a "
                    "Hugging Face XLM-R/RoBERTa MLM directory (or hub name) to start from")
    vocab_size: Optional[int] = _f(None, "vocabulary size; tiny/small take it from the tokenizer")
    hidden_size: Optional[int] = _f(None, "hidden size (overrides the preset)")
    num_layers: Optional[int] = _f(None, "number of transformer layers (overrides the preset)")
    num_heads: Optional[int] = _f(None, "attention heads (overrides the preset)")
    intermediate_size: Optional[int] = _f(None, "feed-forward width (overrides the preset)")
    max_position_embeddings: Optional[int] = _f(None, "position table size; RoBERTa needs seq length + 2")
    type_vocab_size: int = _f(1, "token type rows (XLM-R has 1)")
    layer_norm_eps: float = _f(1e-5, "LayerNorm epsilon")
    hidden_dropout: float = _f(0.1, "dropout on embeddings and layer outputs")
    attention_dropout: float = _f(0.1, "dropout on attention probabilities")
    initializer_range: float = _f(0.02, "std of the normal initialisation")
    sinusoidal_positions: float = _f(0.0, "start the position table as sinusoids of this amplitude, not "
                                     "N(0, std): about 5x --initializer_range spares small models a long "
                                     "plateau before they use word order (0: off)")
    pad_token_id: int = _f(1, "padding token id (XLM-R layout: 1)")
    mini_head: bool = _f(True, "attach the MiniJoint mini head (--no_mini_head: plain MLM baseline)")
    mini_layers: Optional[int] = _f(None, "mini-model depth k: the mini head reads layer k "
                                    "(1..L-1; default L/6 rounded, at least 1)")
    mini_loss_weight: float = _f(1.0, "loss = primary MLM + weight x mini MLM")
    activation_checkpointing: bool = _f(False, "recompute each layer in backward (non-reentrant)")


@dataclass
class DataConfig:
    train_files: list = _f([], "training text: .txt (one document a line) or .jsonl files", nargs="+")
    dataset_name: Optional[str] = _f(None, "a `datasets` name instead of files (needs hub access)")
    dataset_config: Optional[str] = _f(None, "config name of --dataset_name")
    text_field: str = _f("text", "field holding the text in jsonl files and datasets")
    tokenizer: Optional[str] = _f(None, "tokenizer directory (from `mmadapt tokenizer train`) or hub name")
    max_seq_length: int = _f(128, "tokens per packed training block")
    mlm_probability: float = _f(0.15, "share of non-special tokens chosen for prediction")
    cache_dir: Optional[str] = _f(None, "tokenized-data cache (default $MMADAPT_CACHE or ~/.cache/mmadapt)")


@dataclass
class TrainConfig:
    output_dir: Optional[str] = _f(None, "run directory: metrics, checkpoints, config, export")
    deepspeed_config: str = _f("ds_configs/zero3_cpu.json", "DeepSpeed JSON; its \"auto\" values come "
                               "from these flags, an explicit value that disagrees is an error")
    max_steps: int = _f(100, "optimizer steps")
    global_batch_size: int = _f(32, "sequences per optimizer step, over all ranks")
    micro_batch_size: Optional[int] = _f(None, "sequences per rank per forward (default: no accumulation)")
    lr: float = _f(7e-4, "peak learning rate")
    warmup_steps: Optional[int] = _f(None, "linear warm-up steps (none: 6% of --max_steps)")
    weight_decay: float = _f(0.01, "decoupled (AdamW) weight decay")
    adam_beta1: float = _f(0.9, "Adam beta1")
    adam_beta2: float = _f(0.98, "Adam beta2")
    adam_eps: float = _f(1e-6, "Adam epsilon")
    grad_clip: float = _f(1.0, "gradient norm clipping")
    seed: int = _f(0, "seed for init, data order, masking and dropout")
    log_every: int = _f(10, "steps between metrics lines")
    save_every: int = _f(0, "steps between checkpoints (0: only at the end)")
    resume: bool = _f(False, "continue the run in --output_dir from its latest complete checkpoint")
    stop_at_step: Optional[int] = _f(None, "checkpoint and stop at this step, keeping the schedule of "
                                     "--max_steps (time-boxed jobs; continue with --resume)")
    export_hf: bool = _f(True, "export consolidated Hugging Face weights at the end")
    profile_step: int = _f(0, "run this optimizer step under the torch profiler: profile.json / profile.txt "
                           "in --output_dir, time by kind of work (mmadapt/profiling.py; 0: off)")
    forget_every: int = _f(0, "active forgetting (Chen et al. 2023): every this many updates the token "
                           "embeddings (and their tied output projections) are drawn afresh and their Adam "
                           "moments zeroed; not at the last step (0: off)")


SECTIONS = {"model": ModelConfig, "data": DataConfig, "train": TrainConfig}

# name -> (num_layers, hidden, heads, ffn, vocab, max_positions)
PRESETS: dict[str, dict[str, Any]] = {
    "tiny": dict(num_layers=4, hidden_size=64, num_heads=4, intermediate_size=256,
                 vocab_size=None, max_position_embeddings=514),
    "small": dict(num_layers=6, hidden_size=256, num_heads=4, intermediate_size=1024,
                  vocab_size=None, max_position_embeddings=514),
    "xlmr-base": dict(num_layers=12, hidden_size=768, num_heads=12, intermediate_size=3072,
                      vocab_size=XLMR_VOCAB, max_position_embeddings=514),
    "xlmr-large": dict(num_layers=24, hidden_size=1024, num_heads=16, intermediate_size=4096,
                       vocab_size=XLMR_VOCAB, max_position_embeddings=514),
    "xlmr-xl": dict(num_layers=36, hidden_size=2560, num_heads=32, intermediate_size=10240,
                    vocab_size=XLMR_VOCAB, max_position_embeddings=514),
    "xlmr-xxl": dict(num_layers=48, hidden_size=4096, num_heads=32, intermediate_size=16384,
                     vocab_size=XLMR_VOCAB, max_position_embeddings=514),
}

ARCH_FIELDS = ("vocab_size", "hidden_size", "num_layers", "num_heads", "intermediate_size",
               "max_position_embeddings")


def default_mini_layers(num_layers: int) -> int:
    return max(1, round(num_layers / 6))


def resolve_model(cfg: ModelConfig, tokenizer_vocab: Optional[int] = None,
                  pretrained: Optional[dict] = None) -> ModelConfig:
    """Fill architecture fields from the preset (or a pretrained config) and check them.

    ``pretrained`` is the architecture read from a pretrained directory; it wins over presets, and an
    explicit override that disagrees with it is an error (the weights would not fit).
    """
    base = pretrained if pretrained is not None else PRESETS.get(cfg.model)
    if base is None:
        raise ConfigError(f"--model {cfg.model!r}: not a preset ({', '.join(PRESETS)}) nor a model "
                          "directory; fix: pass a preset name or a Hugging Face MLM directory")
    out = dataclasses.replace(cfg)
    for name in ARCH_FIELDS:
        given = getattr(cfg, name)
        if pretrained is not None and given is not None and given != base[name]:
            raise ConfigError(f"--{name} {given}: the pretrained model {cfg.model} has {base[name]}; "
                              f"fix: drop --{name}")
        if given is None:
            setattr(out, name, base[name])
    if out.vocab_size is None:
        if tokenizer_vocab is None:
            raise ConfigError(f"--model {cfg.model}: vocabulary size unknown; fix: pass --tokenizer DIR "
                              "or --vocab_size N")
        out.vocab_size = tokenizer_vocab
    if tokenizer_vocab is not None and out.vocab_size != tokenizer_vocab:
        raise ConfigError(f"--tokenizer has {tokenizer_vocab} tokens but the model's vocabulary is "
                          f"{out.vocab_size}; fix: use the model's own tokenizer or pass "
                          f"--vocab_size {tokenizer_vocab} (new models only)")
    if out.sinusoidal_positions < 0:
        raise ConfigError(f"--sinusoidal_positions {out.sinusoidal_positions}: an amplitude is >= 0; fix: give "
                          "0 (off) or a positive value such as 0.1")
    if out.hidden_size % out.num_heads:
        raise ConfigError(f"--hidden_size {out.hidden_size} is not divisible by --num_heads "
                          f"{out.num_heads}; fix: choose a head count that divides it")
    if out.mini_head:
        if out.mini_layers is None:
            out.mini_layers = default_mini_layers(out.num_layers)
        if not 1 <= out.mini_layers <= out.num_layers - 1:
            raise ConfigError(f"--mini_layers {out.mini_layers} is outside 1..{out.num_layers - 1} for a "
                              f"{out.num_layers}-layer model; fix: pick a layer in that range")
    else:
        out.mini_layers = None
    return out


# ---------------------------------------------------------------- command line


def _base_type(tp):
    if get_origin(tp) is not None and type(None) in get_args(tp):
        return next(a for a in get_args(tp) if a is not type(None))
    return tp


class ArgumentParser(argparse.ArgumentParser):
    """argparse with defaults shown and a bad flag as one line (what, and the fix), exit status 2; with
    ``raise_errors`` (a plan checked before it runs) a ConfigError instead."""

    def __init__(self, *args, raise_errors: bool = False, **kw):
        super().__init__(*args, **kw)
        self.raise_errors = raise_errors

    def error(self, message: str):
        if self.raise_errors:
            raise ConfigError(f"{self.prog}: {message}; fix: see `{self.prog} --help`")
        self.exit(2, f"error: {self.prog}: {message}; fix: see `{self.prog} --help`\n")


def _shown(default) -> str:
    if isinstance(default, list):
        return " ".join(map(str, default)) if default else "none"
    return "none" if default is None else str(default)


def add_dataclass_args(parser: argparse.ArgumentParser, cls, title: str, hidden: tuple = ()) -> None:
    """One flag per field: its help, its default shown, its choices; ``aliases`` metadata adds old or
    alternative spellings; lists take ``item_type`` items."""
    group = parser.add_argument_group(title)
    hints = get_type_hints(cls)
    for f in fields(cls):
        if f.name in hidden:
            continue  # a field this command does not read: no flag (the dataclass default stays)
        tp = _base_type(hints[f.name])
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        names = [f"--{f.name}", *f.metadata.get("aliases", ())]
        help_text = f.metadata.get("help", "").replace("%", "%%")
        kw: dict[str, Any] = {"default": argparse.SUPPRESS, "dest": f.name}
        if "choices" in f.metadata:
            kw["choices"] = f.metadata["choices"]
        if tp is bool:
            # Both spellings for every switch, so a config (the pipeline's YAML) can say false explicitly.
            group.add_argument(*names, action="store_true", help=f"{help_text} (default: {'on' if default else 'off'})",
                               **kw)
            group.add_argument(f"--no_{f.name}", dest=f.name, action="store_false", default=argparse.SUPPRESS,
                               help=f"turn --{f.name} off")
            continue
        if tp is list:
            kw["nargs"] = f.metadata.get("nargs", "+")
            tp = f.metadata.get("item_type", str)
        group.add_argument(*names, type=tp, help=f"{help_text} (default: {_shown(default)})", **kw)


def build_parser(prog: str, description: str, sections=SECTIONS, hidden: tuple = (),
                 raise_errors: bool = False) -> argparse.ArgumentParser:
    parser = ArgumentParser(prog=prog, description=description, raise_errors=raise_errors)
    parser.add_argument("--config", help="JSON or YAML file with any of the flags below (flags win)")
    # The deepspeed launcher appends --local_rank; the environment carries the same value.
    parser.add_argument("--local_rank", type=int, default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    for title, cls in sections.items():
        add_dataclass_args(parser, cls, title, hidden)
    return parser


def _load_config_file(path: str) -> dict:
    if not os.path.isfile(path):
        raise ConfigError(f"--config {path}: no such file; fix: give an existing JSON or YAML file")
    with open(path, encoding="utf-8") as fh:
        text = fh.read()
    try:
        if path.endswith((".yaml", ".yml")):
            import yaml
            data = yaml.safe_load(text) or {}
        else:
            data = json.loads(text)
    except Exception as exc:  # noqa: BLE001 - any parse error becomes one line
        raise ConfigError(f"--config {path}: cannot parse ({exc}); fix: valid JSON or YAML") from None
    flat = {}
    for key, value in data.items():
        if isinstance(value, dict) and key in SECTIONS:
            flat.update(value)
        else:
            flat[key] = value
    return flat


def parse_sections(parser: argparse.ArgumentParser, argv=None, sections=SECTIONS) -> dict:
    args = vars(parser.parse_args(argv))
    values = _load_config_file(args.pop("config")) if args.get("config") else {}
    args.pop("config", None)
    args.pop("local_rank", None)
    values.update(args)
    out = {}
    for title, cls in sections.items():
        names = {f.name for f in fields(cls)}
        out[title] = cls(**{k: v for k, v in values.items() if k in names})
        for k in names:
            values.pop(k, None)
    if values:
        raise ConfigError(f"--config: unknown field(s) {sorted(values)}; fix: remove them "
                          "(see --help for the fields)")
    return out


def to_dict(sections: dict) -> dict:
    return {title: dataclasses.asdict(cfg) for title, cfg in sections.items()}
