"""Active forgetting combined with the mini-model, on the built-in benchmark.

    .venv/bin/python benchmarks/forgetting.py --output_dir runs/forgetting --forget_every 400 \
        --target_sentences 4000

Two demo instances with the same seed and pretraining budget, one pretrained plainly and one with
``--forget_every`` (the token embeddings drawn afresh every K updates, Chen et al. 2023); each runs step 2
through the full model and through the MiniJoint mini-model with the same FLOP budget, against the same
number of fine-tuned task models (best chosen on dev, scored on test). Writes ``forgetting.md``,
``forgetting.json`` and ``forgetting.png`` (zero-shot accuracy against step-2 FLOPs, four curves) in
``--output_dir`` and copies them to ``--results`` (default benchmarks/results/). Every demo flag is
accepted and applies to both instances.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from mmadapt.errors import exit_status  # noqa: E402

ROWS = (("plain", "full", "standard"), ("plain", "mini", "MiniJoint"),
        ("forgetting", "full", "forgetting + standard"), ("forgetting", "mini", "forgetting + MiniJoint"))


def main(argv=None) -> int:
    from mmadapt.demo import DemoConfig, parser

    p = parser()
    p.prog = "benchmarks/forgetting.py"
    p.add_argument("--results", default=os.path.join(REPO, "benchmarks", "results"),
                   help="where the table and plot are copied (default: benchmarks/results)")
    args = vars(p.parse_args(argv))
    results = args.pop("results")
    cfg = DemoConfig(**args)
    if not cfg.forget_every:
        cfg = dataclasses.replace(cfg, forget_every=max(1, cfg.pretrain_steps // 5))
    cfg = dataclasses.replace(cfg, minipost=False, instances=1)
    return exit_status(lambda: run(cfg, results))


def run(cfg, results: str) -> dict:
    from mmadapt.demo import DEMO_MARKER, Demo, check
    from mmadapt.outdir import claim_run_dir
    from mmadapt.report import CHANCE, plot_curves
    from mmadapt.verdict import dev_best, saving_to_reach

    check(cfg)
    out = os.path.abspath(cfg.output_dir)
    claim_run_dir(out, DEMO_MARKER, "--output_dir")
    reports = {}
    for name, forget in (("plain", 0), ("forgetting", cfg.forget_every)):
        one = dataclasses.replace(cfg, forget_every=forget)
        reports[name] = Demo(one, os.path.join(out, f"seed-{cfg.seed}-{name}")).run()
    curves = {label: reports[inst]["curves"][path] for inst, path, label in ROWS}
    key = "zero_shot_accuracy"
    rows, table = [], []
    for inst, path, label in ROWS:
        c = curves[label]
        best = dev_best(c, key)
        reach = saving_to_reach(curves["standard"], c, key)
        rows.append({"row": label, "final": c[-1][key], "best": best[key], "best_dev": best.get("dev_" + key),
                     "best_flops": best["flops"], "first_mark": c[1][key], "saving_to_reach_standard_final": reach,
                     "pretraining": reports[inst]["pretraining"], "source_accuracy": reports[inst]["source_accuracy_mean"]})
        saving = f"{reach['saving']:.3g}x" if reach["saving"] else "never"
        table.append(f"| {label} | {100 * c[1][key]:.1f} | {100 * c[len(c) // 2][key]:.1f} | {100 * c[-1][key]:.1f} | "
                     f"{100 * best[key]:.1f} | {saving} |")
    plot_curves(curves, key, "zero-shot target accuracy, test (mean of fine-tunes)",
                os.path.join(out, "forgetting.png"), CHANCE, labels={label: label for _, _, label in ROWS})
    pre = {inst: reports[inst]["pretraining"] for inst in ("plain", "forgetting")}
    lines = [
        "# Active forgetting with the mini-model", "",
        f"Seed {cfg.seed}, lexicon {cfg.lexicon_size}, model {cfg.num_layers} x {cfg.hidden_size}, mini-model layers "
        f"1..{cfg.mini_layers}; pretraining {cfg.pretrain_steps} steps, forgetting every {cfg.forget_every}; step 2 "
        f"on {cfg.target_sentences} target sentences, {cfg.full_steps} standard steps' worth of FLOPs "
        f"({cfg.eval_marks} marks); {len(cfg.finetune_seeds)} fine-tuned task models per pretraining. Zero-shot "
        "accuracy on test (%); best chosen on dev.", "",
        "| row | first mark | middle mark | final | best | reaches the standard final with |", "|---|---|---|---|---|---|",
        *table, "",
        f"Pretraining (primary / mini MLM loss): plain {pre['plain']['primary_loss']:.3f} / {pre['plain']['mini_loss']:.3f}, "
        f"forgetting {pre['forgetting']['primary_loss']:.3f} / {pre['forgetting']['mini_loss']:.3f}. Source accuracy: "
        f"plain {100 * reports['plain']['source_accuracy_mean']:.1f}%, forgetting "
        f"{100 * reports['forgetting']['source_accuracy_mean']:.1f}%.", "",
        "![zero-shot accuracy against step-2 FLOPs](forgetting.png)",
    ]
    text = "\n".join(lines) + "\n"
    with open(os.path.join(out, "forgetting.md"), "w", encoding="utf-8") as fh:
        fh.write(text)
    summary = {"config": dataclasses.asdict(cfg), "rows": rows, "curves": curves}
    with open(os.path.join(out, "forgetting.json"), "w", encoding="utf-8") as fh:
        json.dump(summary, fh, indent=2)
    if results:
        os.makedirs(results, exist_ok=True)
        for name in ("forgetting.md", "forgetting.json", "forgetting.png"):
            shutil.copy(os.path.join(out, name), os.path.join(results, name))
    print(text, flush=True)
    summary["summary_text"] = text
    return summary


if __name__ == "__main__":
    sys.exit(main())
