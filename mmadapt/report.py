"""Reports: the demo's verdict (downstream quality against step-2 FLOPs), as Markdown, JSON and PNG."""

from __future__ import annotations

import json
import os

PATHS = ("full", "mini")
LABEL = {"full": "standard (through the full model)", "mini": "mini-model (MiniJoint)"}


def read_jsonl(path: str) -> list:
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def first_reaching(curve: list, key: str, target: float):
    """FLOPs of the first evaluation at or above ``target`` (None if never)."""
    for rec in curve:
        if rec.get(key) is not None and rec[key] >= target - 1e-9:
            return rec["flops"]
    return None


def verdict(curves: dict, key: str, chance: float) -> dict:
    """The three numbers the method stands on: both above chance, the best-score gap, the FLOP saving."""
    full, mini = curves["full"], curves["mini"]
    full_final = full[-1][key]
    # Best and reach count only evaluations after some step-2 compute: at step 0 both paths hold the same
    # initial embeddings, and a standard path that ends at chance would otherwise be "reached" for free.
    best = {p: max(r[key] for r in curves[p] if r["flops"] > 0) for p in PATHS}
    reach = first_reaching([r for r in mini if r["flops"] > 0], key, full_final)
    total_full = full[-1]["flops"]
    saving = (total_full / reach) if reach else None
    return {
        "metric": key, "chance": chance, "standard_final": full_final, "mini_final": mini[-1][key],
        "standard_best": best["full"], "mini_best": best["mini"],
        "best_gap_points": 100 * (best["full"] - best["mini"]),
        "mini_flops_to_reach_standard_final": reach, "standard_flops": total_full,
        "flops_saving_to_reach": saving,
        "checks": {
            "both_well_above_chance": min(best.values()) >= chance + 0.10,
            "mini_best_within_2_points": best["mini"] >= best["full"] - 0.02,
            "mini_reaches_standard_final_with_2x_fewer_flops": saving is not None and saving >= 2.0,
        },
    }


def plot_curves(curves: dict, key: str, ylabel: str, path: str, hline=None, labels: dict = LABEL) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for p, label in labels.items():
        pts = [(r["flops"] / 1e12, r[key]) for r in curves[p] if r.get(key) is not None]
        ax.plot(*zip(*pts), marker="o", label=label)
    if hline is not None:
        ax.axhline(hline, color="grey", linestyle="--", label="chance")
    ax.set_xlabel("cumulative step-2 FLOPs (TFLOP)")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _fmt(x, pct=False):
    if x is None:
        return "never"
    return f"{100 * x:.1f}" if pct else (f"{x:.3g}" if isinstance(x, float) else str(x))


def write_demo_report(out: str, config: dict, timings: dict, task_dirs: list) -> dict:
    pre = json.load(open(os.path.join(out, "pretrain", "summary.json")))
    sources = [json.load(open(os.path.join(d, "finetune.json")))["source_score"]["accuracy"] for d in task_dirs]
    curves = {p: read_jsonl(os.path.join(out, f"step2-{p}", "eval.jsonl")) for p in PATHS}
    summaries = {p: json.load(open(os.path.join(out, f"step2-{p}", "summary.json"))) for p in PATHS}
    chance = 1 / 3
    meta_path = os.path.join(out, "data", "meta.json")
    data_meta = json.load(open(meta_path)) if os.path.isfile(meta_path) else {}
    baseline = data_meta.get("lexical_overlap_baseline_accuracy")
    acc = verdict(curves, "zero_shot_accuracy", chance)
    retrieval = verdict(curves, "retrieval_top1", 1 / config["parallel_pairs"])
    sanity = {"unigram_entropy": pre["unigram_entropy"], "primary_loss": pre["final_loss"],
              "mini_loss": pre["final_mini_loss"],
              "primary_below_entropy_by": pre["unigram_entropy"] - pre["final_loss"],
              "primary_beats_mini": pre["final_loss"] < pre["final_mini_loss"]}
    step2 = {p: {"steps": summaries[p]["steps"], "flops": summaries[p]["flops"],
                 "flops_per_step": summaries[p]["flops_per_step"]["total"],
                 "wall_clock_s": summaries[p]["wall_clock_s"]} for p in PATHS}
    ratios = {"flops_per_step": step2["full"]["flops_per_step"] / step2["mini"]["flops_per_step"],
              "wall_per_step": (step2["full"]["wall_clock_s"] / step2["full"]["steps"])
              / (step2["mini"]["wall_clock_s"] / step2["mini"]["steps"])}

    plot_curves(curves, "zero_shot_accuracy", "zero-shot target accuracy (mean of fine-tunes)",
                os.path.join(out, "zero_shot_vs_flops.png"), chance)
    plot_curves(curves, "retrieval_top1", "retrieval top-1 (centred, mean-pooled)",
                os.path.join(out, "retrieval_vs_flops.png"))
    plot_curves(curves, "eval_loss", "primary target MLM loss (diagnostic)",
                os.path.join(out, "mlm_loss_vs_flops.png"))

    ok = all(acc["checks"].values())
    lines = [
        "# mmadapt demo: mini-model adaptation vs the standard approach", "",
        f"Seed {config['seed']}, {config['nproc']} ranks, model {config['num_layers']} layers x "
        f"{config['hidden_size']}, mini-model = layers 1..{config['mini_layers']}.", "",
        "## Verdict (zero-shot target accuracy against step-2 FLOPs)", "",
        "| check | result |", "|---|---|",
        f"| both paths well above chance ({_fmt(chance, True)}%) | {acc['checks']['both_well_above_chance']} |",
        f"| mini best within 2 points of standard best (gap {acc['best_gap_points']:.1f} points) | "
        f"{acc['checks']['mini_best_within_2_points']} |",
        f"| mini reaches the standard final accuracy with >= 2x fewer FLOPs (saving "
        f"{_fmt(acc['flops_saving_to_reach'])}x) | {acc['checks']['mini_reaches_standard_final_with_2x_fewer_flops']}"
        + (" (vacuous: the standard final is not well above chance)"
           if acc["checks"]["mini_reaches_standard_final_with_2x_fewer_flops"]
           and acc["standard_final"] < chance + 0.10 else "") + " |",
        "", f"**Overall: {'met' if ok else 'NOT met'}.**", "",
        "## Accuracy (%)", "", "| source | target, standard final / best | target, mini final / best | chance |",
        "|---|---|---|---|",
        f"| {_fmt(sum(sources) / len(sources), True)} | {_fmt(acc['standard_final'], True)} / "
        f"{_fmt(acc['standard_best'], True)} | {_fmt(acc['mini_final'], True)} / {_fmt(acc['mini_best'], True)} | "
        f"{_fmt(chance, True)} |", "",
        f"Source accuracy per fine-tuning seed: {', '.join(_fmt(x, True) for x in sources)}. Task mode "
        f"{data_meta.get('config', {}).get('task_mode', '?')}; lexical-overlap baseline on the source test "
        f"(majority label per new-word count and frequent new words): {_fmt(baseline, True)}%. Target "
        f"accuracy at step 0 (the fine-tuned models with the step-2 initial embeddings): "
        f"{_fmt(curves['full'][0]['zero_shot_accuracy'], True)}%.", "",
        "## Step-2 compute", "", "| path | steps | FLOPs | FLOPs/step | wall-clock (s) |", "|---|---|---|---|---|",
        *[f"| {LABEL[p]} | {step2[p]['steps']} | {step2[p]['flops']:.3g} | {step2[p]['flops_per_step']:.3g} | "
          f"{step2[p]['wall_clock_s']:.1f} |" for p in PATHS], "",
        f"Per step the mini path costs {ratios['flops_per_step']:.2f}x fewer FLOPs and runs "
        f"{ratios['wall_per_step']:.2f}x faster in wall-clock.", "",
        "## Curves at equal FLOP marks", "", "| path | TFLOP | zero-shot acc | retrieval top-1 | target MLM loss |",
        "|---|---|---|---|---|",
        *[f"| {p} | {r['flops'] / 1e12:.2f} | {_fmt(r['zero_shot_accuracy'], True)} | "
          f"{_fmt(r['retrieval_top1'], True)} | {r['eval_loss']:.3f} |" for p in PATHS for r in curves[p]], "",
        "Retrieval: best " + f"{_fmt(retrieval['standard_best'], True)}% standard, "
        f"{_fmt(retrieval['mini_best'], True)}% mini (chance {_fmt(retrieval['chance'], True)}%).", "",
        "## Pretraining sanity", "",
        f"Unigram entropy of the source text {sanity['unigram_entropy']:.3f} nats; final primary MLM loss "
        f"{sanity['primary_loss']:.3f}, mini MLM loss {sanity['mini_loss']:.3f} "
        f"({sanity['primary_below_entropy_by']:.2f} nats below the entropy; primary "
        f"{'beats' if sanity['primary_beats_mini'] else 'does not beat'} mini).", "",
        "Plots: `zero_shot_vs_flops.png`, `retrieval_vs_flops.png`, `mlm_loss_vs_flops.png` (the MLM loss is "
        "the standard path's own objective: a diagnostic, not the verdict).", "",
        "## Wall-clock by stage (s)", "", "| stage | s |", "|---|---|",
        *[f"| {k} | {v:.0f} |" for k, v in timings.items()],
    ]
    text = "\n".join(lines) + "\n"
    with open(os.path.join(out, "report.md"), "w", encoding="utf-8") as fh:
        fh.write(text)
    report = {"config": config, "verdict": acc, "retrieval": retrieval, "pretraining": sanity, "step2": step2,
              "ratios": ratios, "source_accuracy": sources, "lexical_overlap_baseline": baseline,
              "curves": curves, "timings": timings}
    with open(os.path.join(out, "report.json"), "w", encoding="utf-8") as fh:
        json.dump(report, fh, indent=2)
    summary = (f"\nzero-shot accuracy: standard final {_fmt(acc['standard_final'], True)}% / best "
               f"{_fmt(acc['standard_best'], True)}%, mini final {_fmt(acc['mini_final'], True)}% / best "
               f"{_fmt(acc['mini_best'], True)}% (source {_fmt(sum(sources) / len(sources), True)}%, chance 33.3%)\n"
               + ("mini never reaches the standard final; " if acc["flops_saving_to_reach"] is None else
                  f"mini reaches the standard final with {acc['flops_saving_to_reach']:.3g}x fewer step-2 FLOPs; ")
               + f"best gap {acc['best_gap_points']:.1f} points; verdict {'met' if ok else 'NOT met'}\n"
               f"report: {os.path.join(out, 'report.md')}")
    report["summary_text"] = summary
    return report
