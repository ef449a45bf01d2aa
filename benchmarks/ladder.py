"""Transfer against pretraining budget: the cipher's (or a language's) zero-shot finals of several
realtext.py runs, one point per run at its pretraining tokens or FLOPs (``--x flops``: runs of different
model sizes on one axis, a line per size).

    .venv/bin/python benchmarks/ladder.py --runs RUN_A RUN_B --target cipher --output ladder.png
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mmadapt.artifacts import REALTEXT_REPORT, read_json  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", nargs="+", required=True, help="realtext.py output directories (or results copies)")
    p.add_argument("--target", default="cipher")
    p.add_argument("--output", required=True, help="the PNG to write")
    p.add_argument("--x", choices=("tokens", "flops"), default="tokens", help="the budget axis")
    args = p.parse_args(argv)
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = []
    for run in args.runs:
        if not os.path.isfile(os.path.join(run, REALTEXT_REPORT)):
            print(f"error: --runs {run}: no {REALTEXT_REPORT}; fix: give finished benchmarks/realtext.py runs",
                  file=sys.stderr)
            return 2
        r = read_json(os.path.join(run, REALTEXT_REPORT))
        if args.target not in r["targets"]:
            print(f"error: --runs {run}: no {args.target} target in that run (it has {', '.join(r['targets'])}); "
                  f"fix: pass --target one of those, or run realtext.py --languages {args.target} there", file=sys.stderr)
            return 2
        v = r["targets"][args.target]
        budget = r["pretraining"]["tokens"] / 1e6 if args.x == "tokens" else pretraining_flops(r) / 1e15
        size = f"{r['config']['num_layers']}x{r['config']['hidden_size']}"
        points.append((budget, v["verdict"]["standard_final"], v["verdict"]["mini_final"],
                       v.get("oracle", r["english_accuracy"]), v["baseline"], size))
    points.sort()
    fig, ax = plt.subplots(figsize=(5.4, 3.8))
    x = [pt[0] for pt in points]
    # a line joins the runs of one model size only: points of different sizes are different models
    sizes = list(dict.fromkeys(pt[5] for pt in points))
    for k, size in enumerate(sizes):
        own = [pt for pt in points if pt[5] == size]
        for i, label, color in ((1, "standard final", "C0"), (2, "MiniJoint final", "C1")):
            ax.plot([pt[0] for pt in own], [pt[i] for pt in own], marker="osD^v"[k % 5], color=color,
                    linestyle="-" if k == 0 else "--", label=f"{label}, {size}")
    for i, label, color in ((3, "oracle / English", "C2"), (4, "baseline", "C3")):
        ax.plot(x, [pt[i] for pt in points], marker=".", linestyle=":", color=color, label=label)
    ax.set_xscale("log")
    ax.set_xlabel("pretraining tokens (M)" if args.x == "tokens" else "pretraining FLOPs (PFLOP)")
    ax.set_ylabel(f"{args.target} zero-shot accuracy (test)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(args.output, dpi=110)
    unit = "M tokens" if args.x == "tokens" else " PFLOP"
    for pt in points:
        print(f"{pt[5]} at {pt[0]:.1f}{unit}: standard {100 * pt[1]:.1f}, MiniJoint {100 * pt[2]:.1f}, oracle {100 * pt[3]:.1f}")
    return 0


def pretraining_flops(report: dict) -> float:
    """The run's pretraining FLOPs: recorded since this field was added; for older reports, mmadapt.flops'
    count of its model at the recorded steps with 15% of every block's tokens masked (the stage counts the
    masked share of its data, specials excluded: about 3% less at 4 x 128)."""
    pre, c = report["pretraining"], report["config"]
    if "flops" in pre:
        return pre["flops"]
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from mmadapt.config import ModelConfig, resolve_model
    from mmadapt.flops import fused_attention_runs, pretrain_step_flops

    cfg = resolve_model(ModelConfig(model="tiny", vocab_size=c["vocab_size"], hidden_size=c["hidden_size"],
                                    num_layers=c["num_layers"], num_heads=c.get("num_heads") or max(1, c["hidden_size"] // 32),
                                    intermediate_size=4 * c["hidden_size"],
                                    mini_layers=c["mini_layers"]))
    predicted = c["batch"] * c["seq_len"] * 0.15
    return pre["steps"] * pretrain_step_flops(cfg, c["seq_len"], c["batch"], predicted,
                                              fused_attention=fused_attention_runs(cfg)).total


if __name__ == "__main__":
    sys.exit(main())
