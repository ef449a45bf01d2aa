"""Reports: the demo's verdict (downstream quality against step-2 FLOPs), as Markdown, JSON and PNG.

Every "best" is the evaluation with the highest *dev* figure, scored on *test*; "final" is the last
evaluation's test figure; the FLOP saving is read off evaluations at equal FLOP marks, so it is stated
with the interval the marks allow.
"""

from __future__ import annotations

import json
import os
import statistics

LABEL = {"full": "standard (through the full model)", "mini": "mini-model (MiniJoint)",
         "minipost": "mini-model (MiniPost)"}
CHANCE = 1 / 3
ABOVE_CHANCE = 0.15  # both paths at least this far above chance
BEST_GAP = 0.02  # MiniJoint's best within this of the standard's
SAVING = 2.0  # MiniJoint reaches the standard final with at least this factor fewer FLOPs
CONVERGED = 0.01  # the standard path's last two marks within this: "final" is final
LEARNED = 0.90  # task models that learn the task: mean source accuracy at least this


def read_jsonl(path: str) -> list:
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def first_reaching(curve: list, key: str, target: float):
    """FLOPs of the first evaluation at or above ``target`` (None if never)."""
    for rec in curve:
        if rec.get(key) is not None and rec[key] >= target - 1e-9:
            return rec["flops"]
    return None


def dev_best(curve: list, key: str) -> dict:
    """The evaluation after step 0 with the highest dev figure (the earliest of ties); the dev figure
    stands in for the test one when the run had no dev split."""
    after = [r for r in curve if r["flops"] > 0]
    return max(after, key=lambda r: (r.get("dev_" + key, r[key]), -r["flops"]))


def saving_to_reach(reference: list, curve: list, key: str) -> dict:
    """How much less compute ``curve`` needs to reach ``reference``'s final test figure.

    Evaluations at step 0 do not count (both paths start from the same embeddings). The crossing lies
    between the first reaching mark and the one before it, so the saving lies in
    [budget / reaching FLOPs, budget / previous FLOPs] (no upper bound when the first mark reaches)."""
    target, budget = reference[-1][key], reference[-1]["flops"]
    after = [r for r in curve if r["flops"] > 0]
    for i, r in enumerate(after):
        if r[key] >= target - 1e-9:
            previous = after[i - 1]["flops"] if i else None
            return {"flops_to_reach": r["flops"], "saving": budget / r["flops"],
                    "saving_upper_bound": budget / previous if previous else None, "mark": i + 1}
    return {"flops_to_reach": None, "saving": None, "saving_upper_bound": None, "mark": None}


def verdict(curves: dict, key: str = "zero_shot_accuracy", chance: float = CHANCE) -> dict:
    """The numbers the method stands on, with today's keys kept (standard_*/mini_*, checks)."""
    full, mini = curves["full"], curves["mini"]
    best = {p: dev_best(c, key) for p, c in curves.items()}
    reach = {p: saving_to_reach(full, curves[p], key) for p in curves if p != "full"}
    out = {
        "metric": key, "chance": chance, "selection": "dev", "scored_on": "test",
        "standard_final": full[-1][key], "mini_final": mini[-1][key],
        "standard_best": best["full"][key], "mini_best": best["mini"][key],
        "standard_best_flops": best["full"]["flops"], "mini_best_flops": best["mini"]["flops"],
        "best_gap_points": 100 * (best["full"][key] - best["mini"][key]),
        "mini_flops_to_reach_standard_final": reach["mini"]["flops_to_reach"],
        "standard_flops": full[-1]["flops"],
        "flops_saving_to_reach": reach["mini"]["saving"],
        "flops_saving_upper_bound": reach["mini"]["saving_upper_bound"],
        "mark_spacing_flops": full[1]["flops"] if len(full) > 1 else None,
        "standard_last_marks": [r[key] for r in full[-2:]],
        "standard_converged": len(full) > 2 and abs(full[-1][key] - full[-2][key]) <= CONVERGED + 1e-9,
        "checks": {
            "both_well_above_chance": min(best["full"][key], best["mini"][key]) >= chance + ABOVE_CHANCE,
            "mini_best_within_2_points": best["mini"][key] >= best["full"][key] - BEST_GAP - 1e-9,
            "mini_reaches_standard_final_with_2x_fewer_flops":
                reach["mini"]["saving"] is not None and reach["mini"]["saving"] >= SAVING,
        },
    }
    if "minipost" in curves:
        out.update(minipost_final=curves["minipost"][-1][key], minipost_best=best["minipost"][key],
                   minipost_flops_saving_to_reach=reach["minipost"]["saving"],
                   minipost_flops_saving_upper_bound=reach["minipost"]["saving_upper_bound"])
    return out


def plot_curves(curves: dict, key: str, ylabel: str, path: str, hline=None, labels: dict = LABEL,
                extra: dict | None = None) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for p, curve in curves.items():
        pts = [(r["flops"] / 1e12, r[key]) for r in curve if r.get(key) is not None]
        ax.plot(*zip(*pts), marker="o", markersize=3, label=labels.get(p, p))
    for label, (value, style) in (extra or {}).items():
        ax.axhline(value, color="grey", linestyle=style, label=label)
    if hline is not None:
        ax.axhline(hline, color="grey", linestyle="--", label="chance")
    ax.set_xlabel("cumulative step-2 FLOPs (TFLOP)")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_layer_similarity(similarity: dict, mini_layers: int, path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.8))
    for ax, measure in zip(axes, ("cosine", "cka")):
        for name, values in similarity.items():
            ax.plot(range(len(values[measure])), values[measure], marker="o", markersize=3, label=name)
        ax.axvline(mini_layers, color="grey", linestyle=":", label=f"mini head (layer {mini_layers})")
        ax.set_xlabel("layer (0: embeddings)")
        ax.set_ylabel("centred cosine, sentence vs translation" if measure == "cosine" else "linear CKA")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def pct(x) -> str:
    return "-" if x is None else f"{100 * x:.1f}"


def times(x, upper=None) -> str:
    if x is None:
        return "never"
    return f"{x:.3g}x" + (f" (to {upper:.3g}x)" if upper else " (at the first mark, or more)")


def load_instance(out: str, task_dirs: list, paths: tuple) -> dict:
    pre = json.load(open(os.path.join(out, "pretrain", "summary.json")))
    sources = [json.load(open(os.path.join(d, "finetune.json")))["source_score"]["accuracy"] for d in task_dirs]
    curves = {p: read_jsonl(os.path.join(out, f"step2-{p}", "eval.jsonl")) for p in paths}
    summaries = {p: json.load(open(os.path.join(out, f"step2-{p}", "summary.json"))) for p in paths}
    meta = json.load(open(os.path.join(out, "data", "meta.json")))
    minipost = None
    if "minipost" in paths:
        minipost = json.load(open(os.path.join(out, "minipost", "summary.json")))
    return {"pre": pre, "sources": sources, "curves": curves, "summaries": summaries, "meta": meta,
            "minipost": minipost}


def write_demo_report(out: str, config: dict, timings: dict, task_dirs: list, paths: tuple,
                      analysis: dict, finetune_attempts: list) -> dict:
    d = load_instance(out, task_dirs, paths)
    curves, sources, pre = d["curves"], d["sources"], d["pre"]
    acc = verdict(curves)
    retrieval = verdict(curves, "retrieval_top1", 1 / config["parallel_pairs"])
    source_mean = sum(sources) / len(sources)
    sanity = {"unigram_entropy": pre["unigram_entropy"], "primary_loss": pre["final_loss"],
              "mini_loss": pre["final_mini_loss"],
              "primary_below_entropy_by": pre["unigram_entropy"] - pre["final_loss"],
              "primary_beats_mini": pre["final_loss"] < pre["final_mini_loss"]}
    step2 = {p: {"steps": d["summaries"][p]["steps"], "flops": d["summaries"][p]["flops"],
                 "flops_per_step": d["summaries"][p]["flops_per_step"]["total"],
                 "wall_clock_s": d["summaries"][p]["wall_clock_s"]} for p in paths}
    one_time = {"pretraining_flops": pre["flops"],
                "minipost_flops": d["minipost"]["flops"] if d["minipost"] else None}
    oracle = analysis["oracle"]
    baseline = d["meta"]["lexical_overlap_baseline_accuracy"]
    checks_ok = all(acc["checks"].values())
    meaningful = source_mean >= LEARNED and acc["standard_converged"]
    status = "met" if checks_ok else "NOT met"

    plot_curves(curves, "zero_shot_accuracy", "zero-shot target accuracy, test (mean of fine-tunes)",
                os.path.join(out, "zero_shot_vs_flops.png"), CHANCE,
                extra={"dictionary oracle": (oracle["zero_shot_accuracy"], ":"), "source": (source_mean, "-.")})
    plot_curves(curves, "retrieval_top1", "retrieval top-1, test (centred, mean-pooled)",
                os.path.join(out, "retrieval_vs_flops.png"))
    plot_curves(curves, "eval_loss", "primary target MLM loss (diagnostic)", os.path.join(out, "mlm_loss_vs_flops.png"))
    plot_layer_similarity(analysis["layer_similarity"], analysis["mini_layers"],
                          os.path.join(out, "layer_similarity.png"))

    c = acc["checks"]
    rows = []
    for p in paths:
        best = dev_best(curves[p], "zero_shot_accuracy")
        reach = saving_to_reach(curves["full"], curves[p], "zero_shot_accuracy") if p != "full" else None
        rows.append(f"| {LABEL[p]} | {pct(curves[p][-1]['zero_shot_accuracy'])} | {pct(best['zero_shot_accuracy'])} "
                    f"(dev {pct(best.get('dev_zero_shot_accuracy'))}, at {best['flops'] / 1e12:.3g} TFLOP) | "
                    + ("-" if reach is None else times(reach["saving"], reach["saving_upper_bound"])) + " |")
    sim = analysis["layer_similarity"]
    k, n_layers = analysis["mini_layers"], analysis["num_layers"]
    lines = [
        "# mmadapt demo: mini-model adaptation vs the standard approach", "",
        f"Seed {config['seed']}, {config['nproc']} ranks; model {config['num_layers']} layers x {config['hidden_size']}, "
        f"mini-model = layers 1..{config['mini_layers']}; lexicon {config['lexicon_size']}, target word order "
        f"{config['word_order']}, task mode {config['task_mode']} (negated premises {config['premise_negated']}).", "",
        "## Verdict (zero-shot target accuracy, test; every best chosen on dev)", "",
        "| check | result |", "|---|---|",
        f"| both paths at least {100 * ABOVE_CHANCE:.0f} points above chance ({pct(CHANCE)}%) | {c['both_well_above_chance']} |",
        f"| MiniJoint best within {100 * BEST_GAP:.0f} points of standard best (gap {acc['best_gap_points']:.1f} points) | "
        f"{c['mini_best_within_2_points']} |",
        f"| MiniJoint reaches the standard final with >= {SAVING:g}x fewer step-2 FLOPs (saving "
        f"{times(acc['flops_saving_to_reach'], acc['flops_saving_upper_bound'])}) | "
        f"{c['mini_reaches_standard_final_with_2x_fewer_flops']} |",
        f"| task models learn the task (mean source accuracy {pct(source_mean)}% >= {100 * LEARNED:.0f}%) | "
        f"{source_mean >= LEARNED} |",
        f"| standard path converged (last two marks {', '.join(pct(x) for x in acc['standard_last_marks'])}, within "
        f"{100 * CONVERGED:.0f} point) | {acc['standard_converged']} |", "",
        f"**Overall: {status}.**" + ("" if meaningful else " (The verdict stands on weak ground: "
                                     + ("the task models do not learn the task; " if source_mean < LEARNED else "")
                                     + ("the standard path has not converged, so its final is not final."
                                        if not acc["standard_converged"] else "") + ")"), "",
        f"Evaluations every {acc['mark_spacing_flops'] / 1e12:.3g} TFLOP ({config['eval_marks']} marks per path, "
        "the first at a tenth of the budget or less): a saving is known to within one mark.", "",
        "## Zero-shot accuracy (%)", "",
        "| path | final (test) | best: test (dev), where | reaches the standard final with |", "|---|---|---|---|",
        *rows, "",
        f"Source accuracy per task model: {', '.join(pct(x) for x in sources)} (mean {pct(source_mean)}). "
        f"Fine-tuning attempts (seed: source dev accuracy): "
        + ", ".join(f"{a['seed']}: {pct(a['source_dev_accuracy'])}" + ("" if a["kept"] else " (restarted)")
                    for a in finetune_attempts) + ". "
        f"Lexical-overlap baseline on the source test: {pct(baseline)}%. Target accuracy at step 0 (random "
        f"embeddings): {pct(curves['full'][0]['zero_shot_accuracy'])}%. **Dictionary oracle** (each target word "
        f"given its translation's source row, {oracle['words_mapped']} words): "
        f"{pct(oracle['zero_shot_accuracy'])}% test, the ceiling that word order and the task leave to any step 2.", "",
        "## Step-2 compute", "",
        "| path | steps | FLOPs/step | FLOPs | wall-clock (s) |", "|---|---|---|---|---|",
        *[f"| {LABEL[p]} | {step2[p]['steps']} | {step2[p]['flops_per_step']:.3g} | {step2[p]['flops']:.3g} | "
          f"{step2[p]['wall_clock_s']:.1f} |" for p in paths], "",
        f"One-time costs, not counted above: MiniJoint pretraining {one_time['pretraining_flops']:.3g} FLOPs"
        + (f" (the mini head's share is in it); MiniPost step 1b {one_time['minipost_flops']:.3g} FLOPs."
           if one_time["minipost_flops"] else "."), "",
        "## Curves at equal FLOP marks (test / dev)", "",
        "| path | TFLOP | zero-shot acc | retrieval top-1 | target MLM loss |", "|---|---|---|---|---|",
        *[f"| {p} | {r['flops'] / 1e12:.3g} | {pct(r['zero_shot_accuracy'])} / {pct(r.get('dev_zero_shot_accuracy'))} | "
          f"{pct(r['retrieval_top1'])} / {pct(r.get('dev_retrieval_top1'))} | {r['eval_loss']:.3f} |"
          for p in paths for r in curves[p]], "",
        f"Retrieval (dev-chosen best, test): standard {pct(retrieval['standard_best'])}%, MiniJoint "
        f"{pct(retrieval['mini_best'])}% (chance {pct(retrieval['chance'])}%).", "",
        "## Where the embeddings land", "",
        f"Centred cosine between the primary model's mean-pooled states for a dev sentence and for its "
        f"translation (the candidate target embeddings plugged in), at the embeddings (layer 0), the mini head's "
        f"layer {k} and the last layer {n_layers}; and the share of dictionary words whose learned row's nearest "
        "source row is their translation (`layer_similarity.png` has every layer, and linear CKA).", "",
        "| embeddings | layer 0 | layer k | layer L | translation top-1 |", "|---|---|---|---|---|",
        *[f"| {name} | {v['cosine'][0]:.3f} | {v['cosine'][k]:.3f} | {v['cosine'][n_layers]:.3f} | "
          f"{pct(analysis['translation_top1'][name])}% |" for name, v in sim.items()], "",
        "## Pretraining sanity", "",
        f"Unigram entropy of the source text {sanity['unigram_entropy']:.3f} nats; final primary MLM loss "
        f"{sanity['primary_loss']:.3f}, mini MLM loss {sanity['mini_loss']:.3f} "
        f"({sanity['primary_below_entropy_by']:.2f} nats below the entropy; primary "
        f"{'beats' if sanity['primary_beats_mini'] else 'does not beat'} mini).", "",
        "Plots: `zero_shot_vs_flops.png`, `retrieval_vs_flops.png`, `mlm_loss_vs_flops.png` (the standard "
        "path's own objective: a diagnostic, not the verdict), `layer_similarity.png`.", "",
        "## Wall-clock by stage (s)", "", "| stage | s |", "|---|---|",
        *[f"| {k_} | {v:.0f} |" for k_, v in timings.items()],
    ]
    with open(os.path.join(out, "report.md"), "w", encoding="utf-8") as fh:
        fh.write("\n".join(lines) + "\n")
    report = {"config": config, "verdict": acc, "verdict_met": checks_ok, "verdict_meaningful": meaningful,
              "retrieval": retrieval, "pretraining": sanity, "step2": step2, "one_time_flops": one_time,
              "source_accuracy": sources, "source_accuracy_mean": source_mean, "lexical_overlap_baseline": baseline,
              "finetune_attempts": finetune_attempts,
              "oracle": oracle, "analysis": analysis, "curves": curves, "timings": timings}
    with open(os.path.join(out, "report.json"), "w", encoding="utf-8") as fh:
        json.dump(report, fh, indent=2)
    report["summary_text"] = (
        f"\nseed {config['seed']}: zero-shot accuracy (test; best chosen on dev): standard final "
        f"{pct(acc['standard_final'])}% / best {pct(acc['standard_best'])}%, MiniJoint final {pct(acc['mini_final'])}% / "
        f"best {pct(acc['mini_best'])}%" + (f", MiniPost best {pct(acc['minipost_best'])}%" if "minipost_best" in acc else "")
        + f" (source {pct(source_mean)}%, oracle {pct(oracle['zero_shot_accuracy'])}%, chance 33.3%)\n"
        + ("MiniJoint never reaches the standard final; " if acc["flops_saving_to_reach"] is None else
           f"MiniJoint reaches the standard final with {times(acc['flops_saving_to_reach'], acc['flops_saving_upper_bound'])} "
           "fewer step-2 FLOPs; ")
        + f"best gap {acc['best_gap_points']:.1f} points; verdict {status}\nreport: {os.path.join(out, 'report.md')}")
    return report


def _mean_sd(values: list) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{100 * statistics.mean(values):.1f} ± {100 * sd:.1f}"


def instances_table(reports: list) -> list:
    """Markdown lines: one row per demo report (its own lexicon and word order), then mean ± sd, then the
    count of verdicts met. Reports of different configurations may be tabled together."""
    keys = ("standard_final", "standard_best", "mini_final", "mini_best", "minipost_best")
    rows = []
    for r in reports:
        v, c = r["verdict"], r["config"]
        restarts = sum(not a["kept"] for a in r.get("finetune_attempts", []))
        rows.append(f"| {c['seed']} | {c['lexicon_size']} | {c['word_order']} | {pct(r['source_accuracy_mean'])} | "
                    f"{restarts} | {pct(r['oracle']['zero_shot_accuracy'])} | "
                    + " | ".join(pct(v.get(k)) for k in keys)
                    + f" | {times(v['flops_saving_to_reach'], v['flops_saving_upper_bound'])} | "
                    f"{'met' if r['verdict_met'] else 'NOT met'} |")
    met = sum(r["verdict_met"] for r in reports)
    return [
        "| seed | lexicon | target order | source | restarts | oracle | standard final | standard best | "
        "MiniJoint final | MiniJoint best | MiniPost best | MiniJoint saving to reach the standard final | verdict |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        *rows,
        f"| mean ± sd | | | {_mean_sd([r['source_accuracy_mean'] for r in reports])} | | "
        f"{_mean_sd([r['oracle']['zero_shot_accuracy'] for r in reports])} | "
        + " | ".join(_mean_sd([r["verdict"].get(k) for r in reports]) for k in keys) + " | | |", "",
        f"**Verdict met on {met} of {len(reports)} instances.**",
    ]


def write_instances_report(out: str, config: dict, reports: list) -> dict:
    """Each instance's verdict and the mean and spread of its figures (instances.md / .json)."""
    met = sum(r["verdict_met"] for r in reports)
    lines = [
        "# mmadapt demo: instances", "",
        f"{len(reports)} instances (seeds {reports[0]['config']['seed']}..{reports[-1]['config']['seed']}), model "
        f"{config['num_layers']} x {config['hidden_size']}, mini-model layers 1..{config['mini_layers']}. Zero-shot "
        "accuracy on test (%); every best chosen on dev; source = mean source-task accuracy of the task models; "
        "restarts = task models restarted below the source-dev bar.", "",
        *instances_table(reports),
    ]
    with open(os.path.join(out, "instances.md"), "w", encoding="utf-8") as fh:
        fh.write("\n".join(lines) + "\n")
    summary = {"config": config, "instances": [{"seed": r["config"]["seed"], "verdict": r["verdict"],
                                                "verdict_met": r["verdict_met"],
                                                "source_accuracy_mean": r["source_accuracy_mean"],
                                                "oracle": r["oracle"]} for r in reports],
               "met": met}
    with open(os.path.join(out, "instances.json"), "w", encoding="utf-8") as fh:
        json.dump(summary, fh, indent=2)
    summary["summary_text"] = "\n".join(lines[-1:]) + f"\nreport: {os.path.join(out, 'instances.md')}"
    return summary
