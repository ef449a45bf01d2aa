"""Measured training throughput, FLOP/s and MFU on this machine, in one process.

    .venv/bin/python benchmarks/throughput.py --output benchmarks/results

(a) mmadapt's MiniJoint model (and plain MLM) against Hugging Face's XLMRobertaForMaskedLM with the
    same dimensions, random init, same batch: mmadapt projects only the masked positions to the 250k
    vocabulary, Hugging Face every position.
(b) Step 2 (only the token embeddings train) through the full model and through its mini-model:
    wall-clock and measured FLOPs per step, and how closely the wall-clock ratio follows the FLOPs ratio.
(c) The machine's matmul peak, measured in the same run, and the MFU of every configuration against
    it, including a MiniJoint run at xlmr-base dimensions.

Every configuration is a real training step: forward, backward, AdamW (torch's fused kernel, the same
for all). FLOPs per step are counted by FlopCounterMode on one step (mmadapt.flops.measure_step_flops),
the analytic count of mmadapt.flops beside them. The configurations of a section are timed in
alternation, one step each per round, so that load from other processes falls on all of them alike:
times are medians over --steps rounds after --warmup, and a ratio of two configurations is the median of
their per-round ratios (paired, so a quiet or busy moment cancels). The matmul peak is the best of
measurements taken before, between and after the sections. Bigger runs, e.g.:
--preset xlmr-large --seq_len 512 --batch 8 --skip_base.

OpenMP workers wait passively (OMP_WAIT_POLICY=PASSIVE unless set): on a shared machine a spinning
worker starves its descheduled sibling, and steps of many small kernels ran 3x slower.
"""

from __future__ import annotations

import argparse
import ctypes
import dataclasses
import datetime
import json
import os
import statistics
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Callable, Optional

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # read once, when torch loads OpenMP

import torch  # noqa: E402

from mmadapt.config import ModelConfig, resolve_model  # noqa: E402
from mmadapt.flops import StepFlops, adapt_step_flops, measure_step_flops, pretrain_step_flops  # noqa: E402
from mmadapt.model import IGNORE_INDEX, MiniJointForMaskedLM, MiniModel, masked_lm_loss  # noqa: E402

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
TARGET_WALL_VS_FLOPS = 0.15  # step-2 wall-clock ratio within 15% of the FLOPs ratio
TARGET_SPEEDUP_VS_HF = 1.5
TARGET_MFU = 0.5
SECTION_A = "(a) pretraining step: mmadapt vs Hugging Face"
SECTION_B = "(b) step 2: full model vs mini-model"
SECTION_C = "(c) MFU at xlmr-base dimensions"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--output", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results"),
                   help="directory of the report")
    p.add_argument("--preset", default=None, help="size preset for (a) and (b), e.g. xlmr-base, xlmr-large "
                   "(default: the dimension flags below)")
    p.add_argument("--hidden_size", type=int, default=256, help="model width")
    p.add_argument("--num_layers", type=int, default=12, help="L")
    p.add_argument("--num_heads", type=int, default=4, help="attention heads")
    p.add_argument("--intermediate_size", type=int, default=None, help="default 4 x hidden")
    p.add_argument("--vocab_size", type=int, default=250002, help="rows of the embedding")
    p.add_argument("--mini_layers", type=int, default=None, help="default L/6")
    p.add_argument("--seq_len", type=int, default=128, help="tokens per sequence")
    p.add_argument("--batch", type=int, default=8, help="sequences per step")
    p.add_argument("--masking", type=float, default=0.15, help="share of tokens predicted")
    p.add_argument("--steps", type=int, default=4, help="timed steps per configuration")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps first")
    p.add_argument("--dtype", choices=sorted(DTYPES), default="fp32",
                   help="bf16: CPU autocast (weights and optimizer stay fp32); the peak is measured in it")
    p.add_argument("--threads", type=int, default=None, help="default: every core")
    p.add_argument("--base_seq_len", type=int, default=128, help="sequence of the xlmr-base MFU run")
    p.add_argument("--base_batch", type=int, default=4, help="batch of the xlmr-base MFU run")
    p.add_argument("--skip_hf", action="store_true", help="skip (a)'s Hugging Face model")
    p.add_argument("--skip_base", action="store_true", help="skip the xlmr-base MFU run")
    p.add_argument("--no_malloc_tuning", action="store_true", help="leave glibc's malloc as it is")
    return p.parse_args(argv)


def keep_freed_memory() -> bool:
    """Stop glibc from unmapping every freed large buffer (and page-faulting it back in next step).

    A 250k-vocabulary step allocates several 100+ MB tensors; with glibc's defaults that cost ~0.5 s of
    system time per step here. This is what a jemalloc/tcmalloc preload buys; it applies to every
    configuration alike.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    m_trim_threshold, m_mmap_threshold, two_gib = -1, -3, 2**31 - 1
    return bool(libc.mallopt(m_mmap_threshold, two_gib) and libc.mallopt(m_trim_threshold, two_gib))


def model_config(args: argparse.Namespace) -> ModelConfig:
    dims = dict(vocab_size=args.vocab_size, max_position_embeddings=max(514, args.seq_len + 2),
                mini_layers=args.mini_layers)
    if args.preset is None:
        dims.update(hidden_size=args.hidden_size, num_layers=args.num_layers, num_heads=args.num_heads,
                    intermediate_size=args.intermediate_size or 4 * args.hidden_size)
    return resolve_model(ModelConfig(model=args.preset or "small", **dims))


def random_batch(cfg: ModelConfig, batch: int, seq_len: int, masking: float, seed: int = 0):
    """Random ids without special tokens (so no padding) and labels at a ``masking`` share of positions."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, cfg.vocab_size, (batch, seq_len), generator=g)
    chosen = torch.rand(batch, seq_len, generator=g) < masking
    labels = torch.where(chosen, ids, torch.full_like(ids, IGNORE_INDEX))
    return ids, labels


def matmul_peak(dtype: torch.dtype, n: int = 2048, repeats: int = 10) -> float:
    """Best-of-``repeats`` FLOP/s of an n x n matmul: the most this machine's BLAS delivers."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    torch.matmul(a, b)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        torch.matmul(a, b)
        best = min(best, time.perf_counter() - start)
    return 2.0 * n ** 3 / best


def analytic_pretrain(cfg: ModelConfig, args, predicted: float) -> StepFlops:
    # On CPU, attention dropout sends scaled_dot_product_attention down the math path (no recompute).
    return pretrain_step_flops(cfg, args.seq_len, args.batch, predicted,
                               fused_attention=cfg.attention_dropout == 0)


def analytic_step2(cfg: ModelConfig, args, predicted: float, through: str) -> StepFlops:
    return adapt_step_flops(cfg, args.seq_len, args.batch, predicted, through,
                            fused_attention=cfg.attention_dropout == 0)


# ---------------------------------------------------------------- timing


@dataclass
class Job:
    """One training configuration: its loss, its optimizer, what the formula says it costs."""
    name: str
    loss_fn: Callable[[], torch.Tensor]
    params: list
    tokens: int  # positions read per step
    analytic: Optional[StepFlops] = None


@dataclass
class Run:
    name: str
    tokens: int
    flops: float  # measured by FlopCounterMode on one step
    analytic: Optional[float]
    step_times: list = field(default_factory=list)  # whole steps: forward, backward, optimizer
    fwd_bwd_times: list = field(default_factory=list)  # forward + backward alone

    @property
    def step_s(self) -> float:
        return statistics.median(self.step_times)

    @property
    def fwd_bwd_s(self) -> float:
        return statistics.median(self.fwd_bwd_times)

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.step_s

    @property
    def flops_per_s(self) -> float:
        return self.flops / self.step_s

    def mfu(self, peak: float, fwd_bwd_only: bool = False) -> float:
        return self.flops / (self.fwd_bwd_s if fwd_bwd_only else self.step_s) / peak

    def as_dict(self, peak: float) -> dict:
        return {**dataclasses.asdict(self), "median_step_s": self.step_s, "best_step_s": min(self.step_times),
                "median_fwd_bwd_s": self.fwd_bwd_s, "tokens_per_s": self.tokens_per_s,
                "flops_per_s": self.flops_per_s, "mfu_step": self.mfu(peak),
                "mfu_fwd_bwd": self.mfu(peak, True)}


def paired_time_ratio(slow: Run, fast: Run) -> float:
    """Median over rounds of slow / fast step time: each pair ran back to back, under the same load."""
    return statistics.median(a / b for a, b in zip(slow.step_times, fast.step_times))


def time_jobs(jobs: list, args: argparse.Namespace) -> list:
    """Count each job's FLOPs on one step, then time them round-robin, one step each per round."""
    def loss_of(job):
        with (torch.autocast("cpu", dtype=DTYPES[args.dtype]) if args.dtype != "fp32" else nullcontext()):
            return job.loss_fn()

    optimizers = [torch.optim.AdamW(job.params, lr=1e-5, fused=True) for job in jobs]
    runs = []
    for job, optimizer in zip(jobs, optimizers):
        flops = measure_step_flops(lambda: loss_of(job)).total
        optimizer.zero_grad(set_to_none=True)
        runs.append(Run(job.name, job.tokens, flops, job.analytic.total if job.analytic else None))
    for round_ in range(args.warmup + args.steps):
        for job, optimizer, run in zip(jobs, optimizers, runs):
            start = time.perf_counter()
            loss_of(job).backward()
            middle = time.perf_counter()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            end = time.perf_counter()
            if round_ >= args.warmup:
                run.fwd_bwd_times.append(round(middle - start, 4))
                run.step_times.append(round(end - start, 4))
    for run in runs:
        print(f"  {run.name}: {run.step_s:.3f} s/step, {run.tokens_per_s:.0f} tokens/s, "
              f"{run.flops / 1e9:.1f} GFLOP/step", flush=True)
    return runs


def trainable(model: torch.nn.Module) -> list:
    return [p for p in model.parameters() if p.requires_grad]


# ---------------------------------------------------------------- (a), (b), (c)


def compare_with_hf(args, cfg: ModelConfig, ids, labels) -> list:
    """(a) mmadapt MiniJoint and plain MLM against Hugging Face on the same batch and dimensions."""
    from transformers import XLMRobertaForMaskedLM

    from mmadapt.hf_io import hf_config

    predicted, tokens = int(labels.ne(IGNORE_INDEX).sum()), ids.numel()
    torch.manual_seed(0)
    minijoint = MiniJointForMaskedLM(cfg).train()
    mlm_cfg = dataclasses.replace(cfg, mini_head=False, mini_layers=None)
    mlm = MiniJointForMaskedLM(mlm_cfg).train()
    jobs = [Job("mmadapt MiniJoint (2 heads, masked only)", lambda: minijoint(ids, labels).loss,
                trainable(minijoint), tokens, analytic_pretrain(cfg, args, predicted)),
            Job("mmadapt MLM (1 head, masked only)", lambda: mlm(ids, labels).loss, trainable(mlm),
                tokens, analytic_pretrain(mlm_cfg, args, predicted))]
    if not args.skip_hf:
        hf = XLMRobertaForMaskedLM(hf_config(cfg)).train()
        # Its head projects every position: the analytic count with every token "predicted".
        jobs.append(Job("HF XLMRobertaForMaskedLM (1 head, all positions)",
                        lambda: hf(input_ids=ids, labels=labels).loss, trainable(hf), tokens,
                        analytic_pretrain(mlm_cfg, args, tokens)))
    return time_jobs(jobs, args)


def step2_paths(args, cfg: ModelConfig, ids, labels) -> list:
    """(b) Step 2 through the full model (primary head) and through its mini-model (mini head)."""
    predicted, tokens = int(labels.ne(IGNORE_INDEX).sum()), ids.numel()
    torch.manual_seed(0)
    model = MiniJointForMaskedLM(cfg).train()
    model.requires_grad_(False)
    embeddings = model.roberta.embeddings.word_embeddings.weight  # tied to both heads' projection
    embeddings.requires_grad_(True)
    mini = MiniModel.view(model).train()
    # Two optimizers over the same tensor: each job's steps see only its own Adam state.
    return time_jobs([
        Job("step 2 full", lambda: masked_lm_loss(model.lm_head, model.encode(ids)[0], labels),
            [embeddings], tokens, analytic_step2(cfg, args, predicted, "full")),
        Job(f"step 2 mini (k={cfg.mini_layers})", lambda: mini(ids, labels).loss, [embeddings], tokens,
            analytic_step2(cfg, args, predicted, "mini")),
    ], args)


def base_mfu(args) -> list:
    """(c) MiniJoint pretraining at xlmr-base dimensions (250k vocabulary), short sequences."""
    base_args = argparse.Namespace(**{**vars(args), "seq_len": args.base_seq_len, "batch": args.base_batch})
    cfg = resolve_model(ModelConfig(model="xlmr-base"))
    ids, labels = random_batch(cfg, args.base_batch, args.base_seq_len, args.masking, seed=1)
    torch.manual_seed(0)
    model = MiniJointForMaskedLM(cfg).train()
    name = f"xlmr-base MiniJoint (k={cfg.mini_layers}), {args.base_batch} x seq {args.base_seq_len}"
    return time_jobs([Job(name, lambda: model(ids, labels).loss, trainable(model), ids.numel(),
                          analytic_pretrain(cfg, base_args, int(labels.ne(IGNORE_INDEX).sum())))],
                     base_args)


# ---------------------------------------------------------------- report


def checks(sections: dict, peak: float, vocab: int) -> list:
    """(text, met) for each of the issue's targets that this run measured."""
    full, mini = sections[SECTION_B]
    flops_ratio, wall_ratio = full.flops / mini.flops, paired_time_ratio(full, mini)
    out = [(f"step-2 wall-clock ratio full/mini {wall_ratio:.2f}x vs FLOPs ratio {flops_ratio:.2f}x: "
            f"ratio of ratios {wall_ratio / flops_ratio:.2f} (target: within {TARGET_WALL_VS_FLOPS:.0%})",
            abs(wall_ratio / flops_ratio - 1) <= TARGET_WALL_VS_FLOPS)]
    minijoint, *_, hf = sections[SECTION_A]
    if hf.name.startswith("HF"):
        speedup = paired_time_ratio(hf, minijoint)  # same tokens per step
        out.append((f"MiniJoint throughput {speedup:.2f}x Hugging Face's at vocab {vocab} "
                    f"(target >= {TARGET_SPEEDUP_VS_HF}x)", speedup >= TARGET_SPEEDUP_VS_HF))
    if SECTION_C in sections:
        base = sections[SECTION_C][0]
        out.append((f"MFU at xlmr-base dims {base.mfu(peak):.0%} of the measured matmul peak for the "
                    f"whole step ({base.mfu(peak, fwd_bwd_only=True):.0%} for forward + backward) "
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
             f"{meta['date']}; {meta['machine']}; torch {meta['torch']}, {meta['threads']} threads, "
             f"{meta['dtype']}; malloc tuning {'on' if meta['malloc_tuning'] else 'off'}. Load average "
             f"(1 min) at start / end: {meta['load_start']} / {meta['load_end']}: the machine is shared, "
             "and timings move with its load.",
             f"Command: `{meta['command']}`",
             f"Measured matmul peak ({meta['dtype']}, 2048^3, best of 10, highest of the measurements "
             f"{meta['peaks']} GFLOP/s taken before, between and after the sections): "
             f"**{peak / 1e9:.1f} GFLOP/s**. OMP_WAIT_POLICY={meta['omp_wait_policy']}.",
             f"Model of (a) and (b): h {cfg.hidden_size}, {cfg.num_layers} layers, {cfg.num_heads} heads, "
             f"ffn {cfg.intermediate_size}, vocab {cfg.vocab_size}, mini head after layer {cfg.mini_layers}; "
             f"batch {meta['batch']} x seq {meta['seq_len']}, {meta['masking']:.0%} of positions masked; "
             f"dropout {cfg.hidden_dropout} (so CPU attention runs the unfused math path). Optimizer: "
             "torch AdamW (fused) for every row; step 2 updates only the embedding matrix. Times: "
             f"median of {meta['steps']} steps after {meta['warmup']} warm-up, configurations of a section "
             "alternating; ratios in the targets are medians of per-round ratios."]
    for title, runs in sections.items():
        parts += [f"## {title}", run_table(runs, peak)]
    verdicts = [f"- **{'MET' if met else 'NOT MET'}**: {text}" for text, met in results]
    parts += ["## Targets", "\n".join(verdicts)]
    parts += ["MFU = measured matmul FLOPs per step / time / measured matmul peak (same dtype). FLOPs "
              "count matrix products only (FlopCounterMode's convention); LayerNorm, GELU, softmax, "
              "cross-entropy, dropout, the embedding gradient and the optimizer take time without counted "
              "FLOPs. Precision: fp32 on CPU; --dtype bf16 runs CPU autocast against a bf16 peak."]
    return "\n\n".join(parts) + "\n"


def machine_name() -> str:
    """/proc/cpuinfo's model name and the core count."""
    name = "unknown CPU"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            name = next(line.split(":", 1)[1].strip() for line in fh if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{name}, {os.cpu_count()} cores"


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads or os.cpu_count() or 1)
    malloc_tuning = not args.no_malloc_tuning and keep_freed_memory()
    os.makedirs(args.output, exist_ok=True)
    meta = {"date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"), "machine": machine_name(),
            "torch": torch.__version__, "threads": torch.get_num_threads(), "dtype": args.dtype,
            "malloc_tuning": malloc_tuning, "load_start": f"{os.getloadavg()[0]:.2f}",
            "batch": args.batch, "seq_len": args.seq_len, "masking": args.masking, "steps": args.steps,
            "warmup": args.warmup, "command": " ".join([".venv/bin/python benchmarks/throughput.py",
                                                        *(sys.argv[1:] if argv is None else argv)])}
    peaks = [matmul_peak(DTYPES[args.dtype])]
    print(f"matmul peak {peaks[-1] / 1e9:.1f} GFLOP/s", flush=True)
    cfg = model_config(args)
    ids, labels = random_batch(cfg, args.batch, args.seq_len, args.masking)
    runners = {SECTION_A: lambda: compare_with_hf(args, cfg, ids, labels),
               SECTION_B: lambda: step2_paths(args, cfg, ids, labels)}
    if not args.skip_base:
        runners[SECTION_C] = lambda: base_mfu(args)
    sections = {}
    for title, runner in runners.items():
        print(title, flush=True)
        sections[title] = runner()
        peaks.append(matmul_peak(DTYPES[args.dtype]))  # a quieter moment may show a higher peak
        print(f"matmul peak {peaks[-1] / 1e9:.1f} GFLOP/s", flush=True)
    peak = max(peaks)
    meta["load_end"] = f"{os.getloadavg()[0]:.2f}"
    meta["omp_wait_policy"] = os.environ.get("OMP_WAIT_POLICY")
    meta["peaks"] = [round(p / 1e9, 1) for p in peaks]
    results = checks(sections, peak, cfg.vocab_size)
    with open(os.path.join(args.output, "throughput.md"), "w", encoding="utf-8") as fh:
        fh.write(markdown(meta, cfg, sections, results, peak))
    with open(os.path.join(args.output, "throughput.json"), "w", encoding="utf-8") as fh:
        json.dump({"meta": meta, "matmul_peak_flops": peak, "config": dataclasses.asdict(cfg),
                   "sections": {title: [r.as_dict(peak) for r in runs] for title, runs in sections.items()},
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


if __name__ == "__main__":
    raise SystemExit(main())
