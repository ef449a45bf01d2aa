"""Analytic FLOPs per token of every stage, and ZeRO-3 memory per rank, for the XLM-R sizes.

    .venv/bin/python benchmarks/flops_report.py --output benchmarks/results

For xlmr-base/large/xl/xxl and mini-model depths k = 1, 2, 4, 6 at 512-token sequences with 15% of
positions masked: per-token FLOPs of MLM pretraining, MiniJoint pretraining, step 2 through the full
model and through the mini-model, MiniPost step 1b and fine-tuning; the step-2 saving full/mini (also
with logits at every position, the way a stock Hugging Face head computes them); the MiniJoint
overhead over plain MLM; and ZeRO-3 model-state memory per rank on 1, 8 and 64 GPUs. Writes flops.md,
flops.json and flops.png into --output. The formulas are mmadapt.flops, which tests/test_flops.py
checks against FlopCounterMode on real training steps.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os

from mmadapt.config import ModelConfig, resolve_model
from mmadapt.flops import (adapt_step_flops, finetune_step_flops, minipost_step_flops, model_parameters,
                           parameter_counts, pretrain_step_flops)

MODELS = ("xlmr-base", "xlmr-large", "xlmr-xl", "xlmr-xxl")
DEPTHS = (1, 2, 4, 6)
RANKS = (1, 8, 64)
MINIPOST_NEW_LAYERS = 2  # METHOD.md's starting point for MiniPost: k frozen + 2 new layers
NUM_LABELS = 3  # XNLI
# ZeRO paper, mixed-precision Adam: fp16 parameter and gradient (2 + 2 bytes), fp32 master copy,
# momentum and variance (12 bytes), each partitioned over the data-parallel ranks under stage 3.
PARAM_BYTES, GRAD_BYTES, OPTIMIZER_BYTES = 2, 2, 12
TARGET = ("xlmr-large", 4, 3.0)  # the check: step-2 ratio full/mini at k = 4 is at least 3x


def model_config(model: str, k: int) -> ModelConfig:
    return resolve_model(ModelConfig(model=model, mini_layers=k))


def stage_flops_per_token(cfg: ModelConfig, seq_len: int, masking: float) -> dict:
    """Total FLOPs per token (every position read) of each stage, for one sequence."""
    predicted = masking * seq_len
    everywhere = float(seq_len)  # logits at every position
    mlm = dataclasses.replace(cfg, mini_head=False)
    k = cfg.mini_layers
    stages = {
        "mlm_pretrain": pretrain_step_flops(mlm, seq_len, 1, predicted),
        "minijoint_pretrain": pretrain_step_flops(cfg, seq_len, 1, predicted),
        "step2_full": adapt_step_flops(cfg, seq_len, 1, predicted, "full"),
        "step2_mini": adapt_step_flops(cfg, seq_len, 1, predicted, "mini"),
        "step2_full_all_logits": adapt_step_flops(cfg, seq_len, 1, everywhere, "full"),
        "step2_mini_all_logits": adapt_step_flops(cfg, seq_len, 1, everywhere, "mini"),
        "minipost_1b": minipost_step_flops(cfg, seq_len, 1, predicted, k, MINIPOST_NEW_LAYERS),
        "finetune": finetune_step_flops(cfg, seq_len, 1, NUM_LABELS),
    }
    return {name: flops.total / seq_len for name, flops in stages.items()}


def zero3_gib_per_rank(parameters: int, trainable: int, ranks: int) -> float:
    """Model states only: every parameter in fp16; gradients and Adam states only for what trains."""
    total = PARAM_BYTES * parameters + (GRAD_BYTES + OPTIMIZER_BYTES) * trainable
    return total / ranks / 2**30


def memory_rows(model: str) -> list:
    """ZeRO-3 model-state memory of pretraining and of step 2 through the full model and each mini-model.

    The primary model carries a mini head (k does not change its size); the mini path builds the
    mini-model standalone, so its ranks hold only embeddings + k layers + mini head.
    """
    cfg = model_config(model, DEPTHS[0])
    token_embeddings = parameter_counts(cfg)["token_embeddings"]
    primary = model_parameters(cfg)
    rows = [("MiniJoint pretrain", primary, primary), ("step 2 full", primary, token_embeddings)]
    rows += [(f"step 2 mini k={k}", model_parameters(cfg, k, heads=1), token_embeddings) for k in DEPTHS]
    return [{"stage": stage, "parameters": p, "trainable": t,
             "gib_per_rank": {n: zero3_gib_per_rank(p, t, n) for n in RANKS}} for stage, p, t in rows]


def build_report(seq_len: int, masking: float) -> dict:
    report = {"seq_len": seq_len, "masking": masking, "models": {}}
    for model in MODELS:
        by_depth = {}
        for k in DEPTHS:
            cfg = model_config(model, k)
            per_token = stage_flops_per_token(cfg, seq_len, masking)
            by_depth[k] = {
                "gflop_per_token": {name: v / 1e9 for name, v in per_token.items()},
                "step2_ratio": per_token["step2_full"] / per_token["step2_mini"],
                "step2_ratio_all_logits": (per_token["step2_full_all_logits"]
                                           / per_token["step2_mini_all_logits"]),
                "minijoint_overhead_pct": 100 * (per_token["minijoint_pretrain"]
                                                 / per_token["mlm_pretrain"] - 1),
            }
        cfg = model_config(model, DEPTHS[0])
        report["models"][model] = {"hidden": cfg.hidden_size, "layers": cfg.num_layers,
                                   "ffn": cfg.intermediate_size, "vocab": cfg.vocab_size,
                                   "depths": by_depth, "memory": memory_rows(model)}
    return report


def target_line(report: dict) -> tuple[str, bool]:
    model, k, target = TARGET
    ratio = report["models"][model]["depths"][k]["step2_ratio"]
    return (f"step-2 FLOPs ratio full/mini for {model} k={k} at seq {report['seq_len']}: {ratio:.2f}x "
            f"(target >= {target:.1f}x)", ratio >= target)


# ---------------------------------------------------------------- output


def table(header: list, rows: list) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return "\n".join(lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows])


def markdown(report: dict) -> str:
    seq, masking = report["seq_len"], report["masking"]
    models = report["models"]
    stages = ("mlm_pretrain", "minijoint_pretrain", "step2_full", "step2_mini", "minipost_1b", "finetune")
    flops_rows, ratio_rows, memory_rows_ = [], [], []
    for model, m in models.items():
        for k, d in m["depths"].items():
            g = d["gflop_per_token"]
            flops_rows.append([model, k] + [f"{g[s]:.3f}" for s in stages])
            ratio_rows.append([model, k, f"{d['step2_ratio']:.2f}x", f"{d['step2_ratio_all_logits']:.2f}x",
                               f"{d['minijoint_overhead_pct']:.1f}%"])
        for row in m["memory"]:
            memory_rows_.append([model, row["stage"], f"{row['parameters'] / 1e6:.0f}",
                                 f"{row['trainable'] / 1e6:.0f}"]
                                + [f"{row['gib_per_rank'][n]:.2f}" for n in RANKS])
    line, met = target_line(report)
    dims = ", ".join(f"{name}: h {m['hidden']}, {m['layers']} layers, ffn {m['ffn']}, V {m['vocab']}"
                     for name, m in models.items())
    return "\n\n".join([
        "# FLOPs and memory per stage (analytic, mmadapt.flops)",
        f"Sequence {seq}, {masking:.0%} of positions masked (logits only there unless stated), "
        f"k = mini-model depth. Models: {dims}.",
        f"**{line}: {'met' if met else 'NOT met'}.**",
        "## GFLOP per token (every position counted as a token)",
        "Matmul FLOPs of one forward + backward (no activation checkpointing), attention counted as a "
        "fused kernel runs it (its backward recomputes the scores). MiniPost 1b: k frozen layers + "
        f"{MINIPOST_NEW_LAYERS} new ones and a new head; fine-tuning: classification head on <s> "
        f"({NUM_LABELS} labels), body trained, embeddings frozen.",
        table(["model", "k", "MLM pretrain", "MiniJoint pretrain", "step 2 full", "step 2 mini",
               "MiniPost 1b", "fine-tune"], flops_rows),
        "## Step-2 saving and MiniJoint overhead",
        "Step-2 ratio = FLOPs per step through the full model / through the mini-model. "
        "\"All logits\" projects every position to the vocabulary (a stock Hugging Face MLM head), "
        "\"masked only\" gathers the masked positions first (mmadapt.model.masked_lm_loss). Overhead = "
        "MiniJoint pretraining (second head after layer k) over plain MLM pretraining.",
        table(["model", "k", "step-2 ratio, masked only", "step-2 ratio, all logits",
               "MiniJoint overhead"], ratio_rows),
        "## ZeRO-3 model-state memory per rank (GiB)",
        "Assumptions: ZeRO paper formula for mixed-precision Adam, (2 + 2 + 12) bytes per trained "
        "parameter / ranks: fp16 weights and gradients, fp32 master weights, momentum and variance, all "
        "partitioned (stage 3). In step 2 only the token embedding matrix (and so the tied projection) "
        "trains, so frozen parameters cost their 2 fp16 bytes only; the mini path builds the mini-model "
        "standalone (embeddings + k layers + mini head). Not included: activations, gathered-parameter "
        "working set (ZeRO-3 materialises each module's full fp16 weights while it runs: the embedding "
        "matrix, V x h, is the largest), communication buckets, fragmentation, CPU/NVMe offload.",
        table(["model", "stage", "params (M)", "trained (M)"]
              + [f"{n} GPU" + ("s" if n > 1 else "") for n in RANKS], memory_rows_),
    ]) + "\n"


def plot(report: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=80)
    for i, (model, m) in enumerate(report["models"].items()):
        depths = list(m["depths"])
        colour = f"C{i}"
        ax.plot(depths, [m["depths"][k]["step2_ratio"] for k in depths], "o-", color=colour,
                label=f"{model}, masked only")
        ax.plot(depths, [m["depths"][k]["step2_ratio_all_logits"] for k in depths], "x--", color=colour,
                label=f"{model}, all logits")
    ax.axhline(TARGET[2], color="grey", lw=0.8, ls=":")
    ax.set_yscale("log")
    ax.set_yticks([1, 1.5, 2, 3, 5, 10, 20])
    ax.set_yticklabels(["1", "1.5", "2", "3", "5", "10", "20"])
    ax.set_xlabel("mini-model depth k")
    ax.set_ylabel("step-2 FLOPs, full / mini")
    ax.set_title(f"Step-2 saving at seq {report['seq_len']}, {report['masking']:.0%} masked")
    ax.set_xticks(DEPTHS)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", default=os.path.join(os.path.dirname(__file__), "results"),
                        help="directory for flops.md, flops.json, flops.png")
    parser.add_argument("--seq_len", type=int, default=512)
    parser.add_argument("--masking", type=float, default=0.15)
    args = parser.parse_args(argv)
    os.makedirs(args.output, exist_ok=True)
    report = build_report(args.seq_len, args.masking)
    with open(os.path.join(args.output, "flops.json"), "w", encoding="utf-8") as fh:
        json.dump(report, fh, indent=1)
    with open(os.path.join(args.output, "flops.md"), "w", encoding="utf-8") as fh:
        fh.write(markdown(report))
    plot(report, os.path.join(args.output, "flops.png"))
    line, met = target_line(report)
    print(f"{line}: {'met' if met else 'NOT met'}")
    print(f"wrote {args.output}/flops.md, flops.json, flops.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
