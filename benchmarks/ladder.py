"""Transfer against pretraining budget: the cipher's (or a language's) zero-shot finals of several
realtext.py runs, one point per run at its pretraining tokens.

    .venv/bin/python benchmarks/ladder.py --runs RUN_A RUN_B --target cipher --output ladder.png
"""

from __future__ import annotations

import argparse
import json
import os
import sys


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", nargs="+", required=True, help="realtext.py output directories (or results copies)")
    p.add_argument("--target", default="cipher")
    p.add_argument("--output", required=True, help="the PNG to write")
    args = p.parse_args(argv)
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = []
    for run in args.runs:
        if not os.path.isfile(os.path.join(run, "realtext.json")):
            print(f"error: --runs {run}: no realtext.json; fix: give finished benchmarks/realtext.py runs",
                  file=sys.stderr)
            return 2
        with open(os.path.join(run, "realtext.json"), encoding="utf-8") as fh:
            r = json.load(fh)
        v = r["targets"][args.target]
        points.append((r["pretraining"]["tokens"] / 1e6, v["verdict"]["standard_final"], v["verdict"]["mini_final"],
                       v.get("oracle", r["english_accuracy"]), v["baseline"]))
    points.sort()
    fig, ax = plt.subplots(figsize=(5.4, 3.8))
    x = [pt[0] for pt in points]
    for i, label in ((1, "standard final"), (2, "MiniJoint final"), (3, "oracle / English"), (4, "baseline")):
        ax.plot(x, [pt[i] for pt in points], marker="o", linestyle="-" if i < 3 else ":", label=label)
    ax.set_xscale("log")
    ax.set_xlabel("pretraining tokens (M)")
    ax.set_ylabel(f"{args.target} zero-shot accuracy (test)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(args.output, dpi=110)
    for pt in points:
        print(f"{pt[0]:.1f}M tokens: standard {100 * pt[1]:.1f}, MiniJoint {100 * pt[2]:.1f}, oracle {100 * pt[3]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
