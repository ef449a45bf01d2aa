"""Measured training throughput, FLOP/s and MFU on this machine, in one process.

    .venv/bin/python benchmarks/throughput.py --output benchmarks/results

(a) mmadapt's MiniJoint model (and plain MLM) against Hugging Face's XLMRobertaForMaskedLM with the
    same dimensions, random init, same batch: mmadapt projects only the masked positions to the 250k
    vocabulary, Hugging Face every position.
(b) Step 2 (only the token embeddings train) through the mini-model and through the full model of one
    model: wall-clock and measured FLOPs per step, and how far the wall-clock ratio follows the FLOPs
    ratio.
(c) The machine's fp32 matmul peak, measured in the same run, and the MFU of every configuration
    against it, including a run at xlmr-base dimensions.

Every configuration is a real training step: forward, backward, AdamW (fused, the same for all).
FLOPs per step are counted by FlopCounterMode on one step (mmadapt.flops.measure_step_flops); the
analytic count of mmadapt.flops is shown beside them. Timings are medians over --steps after
--warmup. Bigger runs: --preset xlmr-large --seq_len 512 --batch 8 (on a GPU-less machine, slow).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import gc
import json
import os
import platform
import statistics
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Callable, Optional

import torch

from mmadapt.config import ModelConfig, resolve_model
from mmadapt.flops import StepFlops, adapt_step_flops, measure_step_flops, pretrain_step_flops
from mmadapt.model import IGNORE_INDEX, MiniJointForMaskedLM, MiniModel, masked_lm_loss

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
XLMR_BASE = dict(hidden_size=768, num_layers=12, num_heads=12, intermediate_size=3072)
TARGET_WALL_VS_FLOPS = 0.15  # step-2 wall-clock ratio within 15% of the FLOPs ratio
TARGET_SPEEDUP_VS_HF = 1.5
TARGET_MFU = 0.5


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--output", default=os.path.join(os.path.dirname(__file__), "results"))
    p.add_argument("--preset", default=None, help="model size preset for (a) and (b) (default: the "
                   "dimension flags below); e.g. xlmr-base, xlmr-large")
    p.add_argument("--hidden_size", type=int, default=256)
    p.add_argument("--num_layers", type=int, default=12)
    p.add_argument("--num_heads", type=int, default=4)
    p.add_argument("--intermediate_size", type=int, default=None, help="default 4 x hidden")
    p.add_argument("--vocab_size", type=int, default=250002)
    p.add_argument("--mini_layers", type=int, default=None, help="default L/6")
    p.add_argument("--seq_len", type=int, default=128)
    p.add_argument("--batch", type=int, default=8, help="sequences per step")
    p.add_argument("--masking", type=float, default=0.15)
    p.add_argument("--steps", type=int, default=3, help="timed steps per configuration")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps first")
    p.add_argument("--dtype", choices=sorted(DTYPES), default="fp32",
                   help="bf16: CPU autocast (weights and optimizer stay fp32)")
    p.add_argument("--threads", type=int, default=None, help="default: every core")
    p.add_argument("--base_seq_len", type=int, default=128, help="sequence of the xlmr-base MFU run")
    p.add_argument("--base_batch", type=int, default=4, help="batch of the xlmr-base MFU run")
    p.add_argument("--skip_hf", action="store_true", help="skip (a)'s Hugging Face model")
    p.add_argument("--skip_base", action="store_true", help="skip the xlmr-base MFU run")
    return p.parse_args(argv)


def model_config(args: argparse.Namespace, **over) -> ModelConfig:
    dims = dict(vocab_size=args.vocab_size, max_position_embeddings=max(514, args.seq_len + 2),
                mini_layers=args.mini_layers)
    if args.preset is None:
        dims.update(hidden_size=args.hidden_size, num_layers=args.num_layers, num_heads=args.num_heads,
                    intermediate_size=args.intermediate_size or 4 * args.hidden_size)
    dims.update(over)
    return resolve_model(ModelConfig(model=args.preset or "small", **dims))


def random_batch(cfg: ModelConfig, batch: int, seq_len: int, masking: float, seed: int = 0):
    """Random ids without special tokens (so no padding) and labels at a ``masking`` share of positions."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, cfg.vocab_size, (batch, seq_len), generator=g)
    chosen = torch.rand(batch, seq_len, generator=g) < masking
    labels = torch.where(chosen, ids, torch.full_like(ids, IGNORE_INDEX))
    return ids, labels


def matmul_peak(dtype: torch.dtype, n: int = 2048, repeats: int = 6) -> float:
    """Best-of-``repeats`` FLOP/s of one n x n matmul: what this machine's BLAS reaches at best."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    torch.matmul(a, b)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        torch.matmul(a, b)
        best = min(best, time.perf_counter() - start)
    return 2.0 * n ** 3 / best


# ---------------------------------------------------------------- timing one configuration


@dataclass
class Run:
    name: str
    tokens: int  # positions read per step
    flops: float  # measured by FlopCounterMode, one step
    analytic: Optional[float]  # mmadapt.flops, where it models this configuration
    step_s: float  # median wall-clock of a whole step (forward, backward, optimizer)
    fwd_bwd_s: float  # median wall-clock of forward + backward alone
    step_times: list = field(default_factory=list)

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.step_s

    @property
    def flops_per_s(self) -> float:
        return self.flops / self.step_s

    def mfu(self, peak: float, fwd_bwd_only: bool = False) -> float:
        return self.flops / (self.fwd_bwd_s if fwd_bwd_only else self.step_s) / peak


def benchmark(name: str, loss_fn: Callable[[], torch.Tensor], params: list, tokens: int,
              args: argparse.Namespace, analytic: Optional[StepFlops] = None) -> Run:
    """Count one step's FLOPs, then time ``--warmup`` + ``--steps`` real training steps."""
    autocast = (torch.autocast("cpu", dtype=DTYPES[args.dtype]) if args.dtype != "fp32"
                else nullcontext())
    optimizer = torch.optim.AdamW(params, lr=1e-5, fused=True)

    def forward():
        with autocast:
            return loss_fn()

    flops = measure_step_flops(forward).total
    optimizer.zero_grad(set_to_none=True)
    fwd_bwd, whole = [], []
    for step in range(args.warmup + args.steps):
        start = time.perf_counter()
        forward().backward()
        middle = time.perf_counter()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        end = time.perf_counter()
        if step >= args.warmup:
            fwd_bwd.append(middle - start)
            whole.append(end - start)
    run = Run(name, tokens, flops, analytic.total if analytic else None, statistics.median(whole),
              statistics.median(fwd_bwd), [round(t, 4) for t in whole])
    print(f"  {name}: {run.step_s:.3f} s/step, {run.tokens_per_s:.0f} tokens/s, "
          f"{run.flops / 1e9:.1f} GFLOP/step", flush=True)
    return run


def trainable(model: torch.nn.Module) -> list:
    return [p for p in model.parameters() if p.requires_grad]


def free(*objects) -> None:
    del objects
    gc.collect()


# ---------------------------------------------------------------- (a), (b), (c)


def compare_with_hf(args, cfg: ModelConfig, ids, labels) -> list:
    """(a) mmadapt MiniJoint and plain MLM against Hugging Face on the same batch and dimensions."""
    from transformers import XLMRobertaForMaskedLM

    from mmadapt.hf_io import hf_config

    predicted, tokens = int(labels.ne(IGNORE_INDEX).sum()), ids.numel()
    runs = []
    torch.manual_seed(0)
    model = MiniJointForMaskedLM(cfg).train()
    runs.append(benchmark("mmadapt MiniJoint (2 heads, masked only)", lambda: model(ids, labels).loss,
                          trainable(model), tokens, args,
                          pretrain_step_flops(cfg, args.seq_len, args.batch, predicted)))
    free(model)
    mlm_cfg = dataclasses.replace(cfg, mini_head=False, mini_layers=None)
    model = MiniJointForMaskedLM(mlm_cfg).train()
    runs.append(benchmark("mmadapt MLM (1 head, masked only)", lambda: model(ids, labels).loss,
                          trainable(model), tokens, args,
                          pretrain_step_flops(mlm_cfg, args.seq_len, args.batch, predicted)))
    free(model)
    if not args.skip_hf:
        hf = XLMRobertaForMaskedLM(hf_config(cfg)).train()
        # Its head projects every position: the analytic count with "predicted" = all tokens.
        runs.append(benchmark("HF XLMRobertaForMaskedLM (1 head, all positions)",
                              lambda: hf(input_ids=ids, labels=labels).loss, trainable(hf), tokens, args,
                              pretrain_step_flops(mlm_cfg, args.seq_len, args.batch, tokens)))
        free(hf)
    return runs


def step2_paths(args, cfg: ModelConfig, ids, labels) -> list:
    """(b) Step 2 through the full model (primary head) and through its mini-model."""
    predicted, tokens = int(labels.ne(IGNORE_INDEX).sum()), ids.numel()
    torch.manual_seed(0)
    model = MiniJointForMaskedLM(cfg).train()
    model.requires_grad_(False)
    embeddings = model.roberta.embeddings.word_embeddings.weight  # tied to both heads' projection
    embeddings.requires_grad_(True)
    mini = MiniModel.view(model).train()
    runs = [
        benchmark("step 2 full", lambda: masked_lm_loss(model.lm_head, model.encode(ids)[0], labels),
                  [embeddings], tokens, args,
                  adapt_step_flops(cfg, args.seq_len, args.batch, predicted, "full")),
        benchmark(f"step 2 mini (k={cfg.mini_layers})", lambda: mini(ids, labels).loss, [embeddings],
                  tokens, args, adapt_step_flops(cfg, args.seq_len, args.batch, predicted, "mini")),
    ]
    free(model, mini)
    return runs


def base_mfu(args) -> Run:
    """(c) MiniJoint pretraining at xlmr-base dimensions (250k vocabulary), short sequences."""
    base_args = argparse.Namespace(**{**vars(args), "seq_len": args.base_seq_len, "batch": args.base_batch})
    cfg = resolve_model(ModelConfig(model="xlmr-base"))
    ids, labels = random_batch(cfg, args.base_batch, args.base_seq_len, args.masking, seed=1)
    predicted = int(labels.ne(IGNORE_INDEX).sum())
    torch.manual_seed(0)
    model = MiniJointForMaskedLM(cfg).train()
    run = benchmark(f"xlmr-base MiniJoint (k={cfg.mini_layers}), seq {args.base_seq_len} x "
                    f"{args.base_batch}", lambda: model(ids, labels).loss, trainable(model), ids.numel(),
                    base_args, pretrain_step_flops(cfg, args.base_seq_len, args.base_batch, predicted))
    free(model)
    return run


# ---------------------------------------------------------------- report


def checks(hf_runs: list, step2: list, base: Optional[Run], peak: float, vocab: int) -> list:
    """(text, met or None when not run) for each of the issue's targets."""
    full, mini = step2
    flops_ratio, wall_ratio = full.flops / mini.flops, full.step_s / mini.step_s
    out = [(f"step-2 wall-clock ratio full/mini {wall_ratio:.2f}x vs FLOPs ratio {flops_ratio:.2f}x: "
            f"ratio of ratios {wall_ratio / flops_ratio:.2f} (target within {TARGET_WALL_VS_FLOPS:.0%})",
            abs(wall_ratio / flops_ratio - 1) <= TARGET_WALL_VS_FLOPS)]
    hf = [r for r in hf_runs if r.name.startswith("HF")]
    if hf:
        speedup = hf_runs[0].tokens_per_s / hf[0].tokens_per_s
        out.append((f"MiniJoint throughput {speedup:.2f}x HF at vocab {vocab} "
                    f"(target >= {TARGET_SPEEDUP_VS_HF}x)", speedup >= TARGET_SPEEDUP_VS_HF))
    if base is not None:
        out.append((f"MFU at xlmr-base dims {base.mfu(peak):.0%} of measured matmul peak, whole step "
                    f"({base.mfu(peak, fwd_bwd_only=True):.0%} forward + backward alone) "
                    f"(target >= {TARGET_MFU:.0%})", base.mfu(peak) >= TARGET_MFU))
    return out


def run_table(runs: list, peak: float) -> str:
    header = ["configuration", "s/step", "fwd+bwd s", "tokens/s", "GFLOP/step measured",
              "GFLOP/step analytic", "GFLOP/s", "MFU step", "MFU fwd+bwd"]
    rows = [[r.name, f"{r.step_s:.3f}", f"{r.fwd_bwd_s:.3f}", f"{r.tokens_per_s:.0f}",
             f"{r.flops / 1e9:.2f}", f"{r.analytic / 1e9:.2f}" if r.analytic else "-",
             f"{r.flops_per_s / 1e9:.1f}", f"{r.mfu(peak):.0%}", f"{r.mfu(peak, True):.0%}"]
            for r in runs]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def markdown(meta: dict, cfg: ModelConfig, sections: dict, results: list, peak: float) -> str:
    parts = ["# Throughput, FLOP/s and MFU (measured)",
             f"{meta['date']}, {meta['machine']}, torch {meta['torch']}, {meta['threads']} threads, "
             f"{meta['dtype']}. Load average at start / end: {meta['load_start']} / {meta['load_end']} "
             "(the machine is shared; timings move with it).",
             f"Command: `{meta['command']}`",
             f"Measured matmul peak ({meta['dtype']}, 2048^3, best of 6): **{peak / 1e9:.1f} GFLOP/s**.",
             f"Model for (a) and (b): h {cfg.hidden_size}, {cfg.num_layers} layers, {cfg.num_heads} heads, "
             f"ffn {cfg.intermediate_size}, vocab {cfg.vocab_size}, mini head after layer "
             f"{cfg.mini_layers}; batch {meta['batch']} x seq {meta['seq_len']}, {meta['masking']:.0%} "
             f"masked; dropout as configured (0.1). Optimizer: torch AdamW (fused), same for every row; "
             f"step 2 updates only the embedding matrix."]
    for title, runs in sections.items():
        parts += [f"## {title}", run_table(runs, peak)]
    parts += ["## Targets"] + [f"- {'MET' if met else 'NOT MET'}: {text}" for text, met in results]
    parts += ["Notes: MFU = measured matmul FLOPs per step / time / measured matmul peak (same dtype). "
              "FLOPs count only matrix products (FlopCounterMode's convention); LayerNorm, GELU, "
              "softmax, cross-entropy, dropout, the embedding gradient and the optimizer are time "
              "without counted FLOPs. fp32 on CPU: bf16 autocast (--dtype bf16) changes the peak and "
              "the kernels."]
    return "\n\n".join(parts) + "\n"


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads or os.cpu_count() or 1)
    os.makedirs(args.output, exist_ok=True)
    meta = {"date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"), "machine": machine_name(),
            "torch": torch.__version__, "threads": torch.get_num_threads(),
            "dtype": args.dtype, "load_start": "%.2f" % os.getloadavg()[0], "batch": args.batch,
            "seq_len": args.seq_len, "masking": args.masking,
            "command": " ".join([".venv/bin/python benchmarks/throughput.py",
                                 *(sys.argv[1:] if argv is None else argv)])}
    print("(c) matmul peak", flush=True)
    peak = matmul_peak(DTYPES[args.dtype])
    print(f"  {peak / 1e9:.1f} GFLOP/s", flush=True)
    cfg = model_config(args)
    ids, labels = random_batch(cfg, args.batch, args.seq_len, args.masking)
    print("(a) mmadapt vs Hugging Face", flush=True)
    sections = {"(a) pretraining step: mmadapt vs Hugging Face": compare_with_hf(args, cfg, ids, labels)}
    print("(b) step 2 through full and mini", flush=True)
    sections["(b) step 2: full model vs mini-model"] = step2_paths(args, cfg, ids, labels)
    base = None
    if not args.skip_base:
        print("(c) xlmr-base dimensions", flush=True)
        base = base_mfu(args)
        sections["(c) MFU at xlmr-base dimensions"] = [base]
    meta["load_end"] = "%.2f" % os.getloadavg()[0]
    results = checks(sections["(a) pretraining step: mmadapt vs Hugging Face"],
                     sections["(b) step 2: full model vs mini-model"], base, peak, cfg.vocab_size)
    with open(os.path.join(args.output, "throughput.md"), "w", encoding="utf-8") as fh:
        fh.write(markdown(meta, cfg, sections, results, peak))
    with open(os.path.join(args.output, "throughput.json"), "w", encoding="utf-8") as fh:
        json.dump({"meta": meta, "matmul_peak_flops": peak, "config": dataclasses.asdict(cfg),
                   "sections": {title: [{**dataclasses.asdict(r), "tokens_per_s": r.tokens_per_s,
                                         "flops_per_s": r.flops_per_s, "mfu_step": r.mfu(peak),
                                         "mfu_fwd_bwd": r.mfu(peak, True)} for r in runs]
                                for title, runs in sections.items()},
                   "targets": [{"check": text, "met": met} for text, met in results]}, fh, indent=1)
    print()
    for title, runs in sections.items():
        print(title)
        print(run_table(runs, peak))
    print()
    for text, met in results:
        print(f"{'MET' if met else 'NOT MET'}: {text}")
    print(f"wrote {args.output}/throughput.md, throughput.json")
    return 0


def machine_name() -> str:
    """lscpu's model name and the core count, for the report."""
    name = platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            name = next(line.split(":", 1)[1].strip() for line in fh if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{name}, {os.cpu_count()} cores"


if __name__ == "__main__":
    raise SystemExit(main())
