"""DeepSpeed JSON: read, check, and fill its ``"auto"`` values from the typed config.

The JSON owns what only DeepSpeed knows (ZeRO stage, precision, offload); values the typed config also
owns (batch sizes, optimizer and schedule numbers, clipping) are ``"auto"`` there. An explicit value that
disagrees with the typed config is an error, never a silent override.
"""

from __future__ import annotations

import copy
import dataclasses
import os

from .config import TrainConfig
from .errors import ConfigError

KNOWN_OPTIMIZERS = {"adam", "adamw", "fusedadam", "cpuadam"}


# The shipped configs live in the package (a checkout's ds_configs/ links here), so an installed mmadapt
# has them too.
SHIPPED = os.path.join(os.path.dirname(os.path.abspath(__file__)), "ds_configs")


def shipped_config(name: str) -> str:
    return os.path.join(SHIPPED, name)


def load_ds_json(path: str) -> dict:
    # "ds_configs/x.json" (or "x.json") names a shipped config from any working directory.
    if not os.path.isfile(path) and not os.path.isabs(path):
        shipped = shipped_config(os.path.basename(path))
        if os.path.isfile(shipped):
            path = shipped
    if not os.path.isfile(path):
        raise ConfigError(f"--deepspeed_config {path}: not found; fix: use one of ds_configs/*.json")
    # DeepSpeed reads its config as HJSON (JSON plus comments); so do we, so that the shipped configs can
    # say why each knob is set.
    import hjson

    with open(path, encoding="utf-8") as fh:
        try:
            data = hjson.load(fh, object_pairs_hook=dict)
        except hjson.HjsonDecodeError as exc:
            raise ConfigError(f"--deepspeed_config {path}: invalid JSON at line {exc.lineno} column "
                              f"{exc.colno} ({exc.msg}); fix: correct the file") from None
    if not isinstance(data, dict):
        raise ConfigError(f"--deepspeed_config {path}: top level must be an object; fix: see ds_configs/")
    return data


def warmup_steps(train: TrainConfig) -> int:
    return train.warmup_steps if train.warmup_steps is not None else max(1, round(0.06 * train.max_steps))


def _settle(where: str, path: str, holder: dict, key: str, value, flag: str) -> None:
    """Fill ``holder[key]`` if "auto" or absent; an explicit different value is an error."""
    current = holder.get(key, "auto")
    if current == "auto":
        holder[key] = value
        return
    same = (abs(float(current) - float(value)) <= 1e-12 * max(1.0, abs(float(value)))
            if isinstance(value, float) else current == value)
    if not same:
        raise ConfigError(f"--deepspeed_config {path}: {where}{key} is {current} but {flag} gives {value}; "
                          f"fix: set it to \"auto\" or pass {flag} {current}")


def resolve_ds_config(path: str, train: TrainConfig, world_size: int) -> tuple[dict, TrainConfig]:
    """The DeepSpeed dict to pass to ``deepspeed.initialize`` and the train config with batch sizes set."""
    ds = copy.deepcopy(load_ds_json(path))
    stage = ds.get("zero_optimization", {}).get("stage", 0)
    if stage not in (0, 1, 2, 3):
        raise ConfigError(f"--deepspeed_config {path}: zero_optimization.stage {stage!r} is not 0-3; fix: "
                          "choose a ZeRO stage 0, 1, 2 or 3")
    if ds.get("bf16", {}).get("enabled") is True and ds.get("fp16", {}).get("enabled") is True:
        raise ConfigError(f"--deepspeed_config {path}: bf16 and fp16 are both enabled; fix: enable one")

    gbs = train.global_batch_size
    if gbs % world_size:
        raise ConfigError(f"--global_batch_size {gbs} is not divisible by the world size {world_size}; "
                          f"fix: use a multiple of {world_size}")
    micro = train.micro_batch_size
    if micro is None:
        json_micro = ds.get("train_micro_batch_size_per_gpu", "auto")
        micro = gbs // world_size if json_micro == "auto" else int(json_micro)
    if micro < 1 or gbs % (micro * world_size):
        raise ConfigError(f"--global_batch_size {gbs} is not a multiple of micro batch {micro} x world size "
                          f"{world_size}; fix: pick --micro_batch_size dividing {gbs // world_size}")
    accum = gbs // (micro * world_size)
    train = dataclasses.replace(train, micro_batch_size=micro)

    _settle("", path, ds, "train_batch_size", gbs, "--global_batch_size")
    _settle("", path, ds, "train_micro_batch_size_per_gpu", micro, "--micro_batch_size")
    _settle("", path, ds, "gradient_accumulation_steps", accum, "--global_batch_size")
    _settle("", path, ds, "gradient_clipping", train.grad_clip, "--grad_clip")

    opt = ds.setdefault("optimizer", {"type": "Adam"})
    if str(opt.get("type", "")).lower() not in KNOWN_OPTIMIZERS:
        raise ConfigError(f"--deepspeed_config {path}: optimizer.type {opt.get('type')!r} is not one of "
                          f"Adam, AdamW; fix: use \"Adam\" (adam_w_mode true for decoupled decay)")
    params = opt.setdefault("params", {})
    _settle("optimizer.params.", path, params, "lr", train.lr, "--lr")
    _settle("optimizer.params.", path, params, "weight_decay", train.weight_decay, "--weight_decay")
    _settle("optimizer.params.", path, params, "eps", train.adam_eps, "--adam_eps")
    betas = params.get("betas", "auto")
    want = [train.adam_beta1, train.adam_beta2]
    if betas == "auto":
        params["betas"] = want
    elif [float(b) for b in betas] != want:
        raise ConfigError(f"--deepspeed_config {path}: optimizer.params.betas is {betas} but --adam_beta1/2 "
                          f"give {want}; fix: set it to \"auto\"")

    sched = ds.setdefault("scheduler", {"type": "WarmupDecayLR"})
    sp = sched.setdefault("params", {})
    _settle("scheduler.params.", path, sp, "warmup_max_lr", train.lr, "--lr")
    _settle("scheduler.params.", path, sp, "warmup_num_steps", warmup_steps(train), "--warmup_steps")
    _settle("scheduler.params.", path, sp, "total_num_steps", train.max_steps, "--max_steps")
    sp.setdefault("warmup_min_lr", 0.0)
    sp.setdefault("warmup_type", "linear")

    leftovers = [k for k, v in _walk(ds) if v == "auto"]
    if leftovers:
        raise ConfigError(f"--deepspeed_config {path}: no typed-config value fills {leftovers}; fix: "
                          "give explicit values there")
    return ds, train


def _walk(d: dict, prefix: str = ""):
    for k, v in d.items():
        if isinstance(v, dict):
            yield from _walk(v, f"{prefix}{k}.")
        else:
            yield f"{prefix}{k}", v


def zero_stage(ds: dict) -> int:
    return int(ds.get("zero_optimization", {}).get("stage", 0))
