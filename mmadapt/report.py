"""Reports: the demo's verdict (downstream quality against step-2 FLOPs and wall-clock), as Markdown, JSON
and PNG. The verdict itself is mmadapt/verdict.py (pure); this module loads a run, renders and plots.
"""

from __future__ import annotations

import os
import statistics

from .artifacts import (INSTANCES_REPORT, INSTANCES_REPORT_MD, DemoDir, read_finetune_meta, read_json, write_json,
                        write_text)
from .verdict import Criteria, dev_best, saving_to_reach, verdict, wall_clock_to_reach, wilson_interval

LABEL = {"full": "standard (through the full model)", "mini": "mini-model (MiniJoint)",
         "minipost": "mini-model (MiniPost)"}
CHANCE = 1 / 3
CRITERIA = Criteria()


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


def plot_panels(path: str, panels: dict, key: str, ylabel: str) -> None:
    """Side-by-side panels of ``key`` against step-2 TFLOP (one per target language, say):
    {title: {"lines": [(label, curve, linestyle)], "hlines": [(value, linestyle, label)]}}."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(4.4 * len(panels), 3.6), squeeze=False)
    for ax, (title, panel) in zip(axes[0], panels.items()):
        for label, curve, style in panel["lines"]:
            pts = [(r["flops"] / 1e12, r[key]) for r in curve if r.get(key) is not None]
            ax.plot(*zip(*pts), marker="o", markersize=3, linestyle=style, label=label)
        for value, style, label in panel.get("hlines", ()):
            ax.axhline(value, color="grey", linestyle=style, label=label)
        ax.set_title(title)
        ax.set_xlabel("step-2 TFLOP")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel(ylabel)
    axes[0][0].legend(fontsize=7)
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


def pct_ci(x, n: int) -> str:
    """A test figure with its 95% interval over ``n`` examples: 87.1 [86.5, 87.7]."""
    if x is None:
        return "-"
    lo, hi = wilson_interval(x, n)
    return f"{100 * x:.1f} [{100 * lo:.1f}, {100 * hi:.1f}]"


def times(x, upper=None) -> str:
    if x is None:
        return "never"
    return f"{x:.3g}x" + (f" (to {upper:.3g}x)" if upper else " (at the first mark, or more)")


def reach_text(reach: dict) -> str:
    """The held crossing, with the single-mark first crossing beside it."""
    first = reach["first_crossing"]
    return (times(reach["saving"], reach["saving_upper_bound"])
            + f"; first crossing {times(first['saving'], first['saving_upper_bound'])}")


def load_instance(out: str, task_dirs: list, paths: tuple) -> dict:
    """Everything one demo instance wrote that its report reads."""
    run = DemoDir(out)
    return {"pre": run.pretrain.read_summary(),
            "sources": [read_finetune_meta(d)["source_score"]["accuracy"] for d in task_dirs],
            "curves": {p: run.step2(p).read_eval() for p in paths},
            "summaries": {p: run.step2(p).read_summary() for p in paths},
            "meta": read_json(run.data.meta),
            "minipost": run.minipost.read_summary() if "minipost" in paths else None}


def step2_timing(summary: dict, curve: list) -> dict:
    """Seconds a step-2 run spent training and evaluating, and where a training step's time went."""
    steps = max(1, summary["steps_this_run"])
    phases = summary.get("phase_seconds", {})
    return {"steps": summary["steps"], "flops": summary["flops"], "flops_per_step": summary["flops_per_step"]["total"],
            "wall_clock_s": summary["wall_clock_s"], "train_seconds": summary["wall_clock_s"],
            "eval_seconds": summary["eval_seconds"], "evaluations": len(curve),
            "ms_per_step": 1000 * summary["wall_clock_s"] / steps,
            "phase_ms_per_step": {k: 1000 * v / steps for k, v in phases.items()},
            "other_ms_per_step": 1000 * (summary["wall_clock_s"] - sum(phases.values())) / steps}


def demo_figures(d: dict, config: dict, analysis: dict, paths: tuple) -> dict:
    """The verdicts and the figures beside them, from a loaded instance (pure: no files)."""
    curves, sources, pre = d["curves"], d["sources"], d["pre"]
    source_mean = sum(sources) / len(sources)
    acc = verdict(curves, "zero_shot_accuracy", CHANCE, config["task_test"], source_mean, CRITERIA)
    retrieval = verdict(curves, "retrieval_top1", 1 / config["parallel_pairs"], config["parallel_pairs"])
    reach = {p: saving_to_reach(curves["full"], curves[p], "zero_shot_accuracy", acc["tolerance"])
             for p in paths if p != "full"}
    step2 = {p: step2_timing(d["summaries"][p], curves[p]) for p in paths}
    wall = {p: wall_clock_to_reach(curves["full"], curves[p], reach[p]) for p in reach}
    sanity = {"unigram_entropy": pre["unigram_entropy"], "primary_loss": pre["final_loss"],
              "mini_loss": pre["final_mini_loss"],
              "primary_below_entropy_by": pre["unigram_entropy"] - pre["final_loss"],
              "primary_beats_mini": pre["final_loss"] < pre["final_mini_loss"]}
    return {"verdict": acc, "retrieval": retrieval, "reach": reach, "step2": step2, "wall_clock_to_reach": wall,
            "pretraining": sanity, "sources": sources, "source_mean": source_mean,
            "one_time": {"pretraining_flops": pre["flops"],
                         "minipost_flops": d["minipost"]["flops"] if d["minipost"] else None}}


def write_demo_plots(out: str, curves: dict, analysis: dict, source_mean: float) -> None:
    oracle = analysis["oracle"]
    plot_curves(curves, "zero_shot_accuracy", "zero-shot target accuracy, test (mean of fine-tunes)",
                os.path.join(out, "zero_shot_vs_flops.png"), CHANCE,
                extra={"dictionary oracle": (oracle["zero_shot_accuracy"], ":"), "source": (source_mean, "-.")})
    plot_curves(curves, "retrieval_top1", "retrieval top-1, test (centred, mean-pooled)",
                os.path.join(out, "retrieval_vs_flops.png"))
    plot_curves(curves, "eval_loss", "primary target MLM loss (diagnostic)", os.path.join(out, "mlm_loss_vs_flops.png"))
    plot_layer_similarity(analysis["layer_similarity"], analysis["mini_layers"],
                          os.path.join(out, "layer_similarity.png"))


def demo_markdown(config: dict, timings: dict, paths: tuple, analysis: dict, finetune_attempts: list,
                  f: dict, curves: dict, baseline: float) -> list:
    acc, c, n = f["verdict"], f["verdict"]["checks"], config["task_test"]
    sources_mean, step2, oracle, sanity = f["source_mean"], f["step2"], analysis["oracle"], f["pretraining"]
    status = "met" if acc["met"] else "NOT met"
    rows = []
    for p in paths:
        best = dev_best(curves[p], "zero_shot_accuracy")
        rows.append(f"| {LABEL[p]} | {pct_ci(curves[p][-1]['zero_shot_accuracy'], n)} | "
                    f"{pct_ci(best['zero_shot_accuracy'], n)} (dev {pct(best.get('dev_zero_shot_accuracy'))}, at "
                    f"{best['flops'] / 1e12:.3g} TFLOP) | " + ("-" if p == "full" else reach_text(f["reach"][p])) + " |")
    wall_rows = []
    for p in paths:
        s, w = step2[p], f["wall_clock_to_reach"].get(p)
        ph = s["phase_ms_per_step"]
        to_reach = "-" if w is None else ("never" if w["seconds_to_reach"] is None else
                                          f"{w['seconds_to_reach']:.1f} s ({w['wall_clock_saving']:.2f}x less than "
                                          f"the standard's {w['standard_train_seconds']:.1f} s)")
        wall_rows.append(
            f"| {LABEL[p]} | {s['steps']} | {s['train_seconds']:.1f} | {s['eval_seconds']:.1f} | {s['ms_per_step']:.1f} | "
            + " / ".join(f"{ph.get(k, 0):.1f}" for k in ("batch", "forward", "backward", "step"))
            + f" / {s['other_ms_per_step']:.1f} | {to_reach} |")
    sim = analysis["layer_similarity"]
    k, n_layers = analysis["mini_layers"], analysis["num_layers"]
    first = acc["first_crossing"]
    return [
        "# mmadapt demo: mini-model adaptation vs the standard approach", "",
        f"Seed {config['seed']}, {config['nproc']} ranks; model {config['num_layers']} layers x {config['hidden_size']}, "
        f"mini-model = layers 1..{config['mini_layers']}; lexicon {config['lexicon_size']}, target word order "
        f"{config['word_order']}, task mode {config['task_mode']} (negated premises {config['premise_negated']}).", "",
        "## Verdict (zero-shot target accuracy, test; every best chosen on dev)", "",
        f"Test figures carry their 95% (Wilson) interval over the {n} target test examples. **Reaching** the "
        f"standard final ({pct(acc['standard_final'])}%) means being at or above it less the test noise "
        f"(tolerance {100 * acc['tolerance']:.2f} points: half the width of its 95% interval) from a mark on, at "
        "every later mark too; the first single-mark crossing of the final itself is shown beside it.", "",
        "| check | result |", "|---|---|",
        f"| both paths' bests and the standard final at least {100 * CRITERIA.above_chance:.0f} points above chance "
        f"({pct(CHANCE)}%) | {c['both_well_above_chance']} |",
        f"| MiniJoint best within {100 * CRITERIA.best_gap:.0f} points of standard best (gap "
        f"{acc['best_gap_points']:.1f} points) | {c['mini_best_within_2_points']} |",
        f"| MiniJoint reaches the standard final with >= {CRITERIA.saving:g}x fewer step-2 FLOPs (held from mark "
        f"{acc['reach_mark'] or '-'}: {times(acc['flops_saving_to_reach'], acc['flops_saving_upper_bound'])}; first "
        f"crossing {times(first['saving'], first['saving_upper_bound'])}) | "
        f"{c['mini_reaches_standard_final_with_2x_fewer_flops']} |",
        f"| task models learn the task (mean source accuracy {pct(sources_mean)}% >= {100 * CRITERIA.learned:.0f}%) | "
        f"{c['task_models_learn_the_task']} |",
        f"| standard path converged: last two marks {', '.join(pct(x) for x in acc['standard_last_marks'])} within the "
        f"tolerance ({acc['standard_converged']}), final within it of its best ({pct(acc['standard_best'])}%: "
        f"{acc['standard_final_holds_best']}) | {c['standard_converged']} |", "",
        f"**Overall: {status}** (every check above must hold).", "",
        f"Evaluations every {acc['mark_spacing_flops'] / 1e12:.3g} TFLOP ({config['eval_marks']} marks per path): a "
        "saving is known to within one mark.", "",
        "## Zero-shot accuracy (%, test with 95% interval)", "",
        "| path | final | best: test (dev), where | reaches the standard final with (held; first crossing) |",
        "|---|---|---|---|", *rows, "",
        f"Source accuracy per task model: {', '.join(pct(x) for x in f['sources'])} (mean {pct(sources_mean)}). "
        f"Fine-tuning attempts (seed: source dev accuracy): "
        + ", ".join(f"{a['seed']}: {pct(a['source_dev_accuracy'])}" + ("" if a["kept"] else " (restarted)")
                    for a in finetune_attempts) + ". "
        f"Lexical-overlap baseline on the source test: {pct(baseline)}%. Target accuracy at step 0 (random "
        f"embeddings): {pct(curves['full'][0]['zero_shot_accuracy'])}%. **Dictionary oracle** (each target word "
        f"given its translation's source row, {oracle['words_mapped']} words): "
        f"{pct_ci(oracle['zero_shot_accuracy'], n)}% test, the ceiling that word order and the task leave to any "
        "step 2.", "",
        "## Step-2 compute and wall-clock", "",
        "| path | steps | FLOPs/step | FLOPs |", "|---|---|---|---|",
        *[f"| {LABEL[p]} | {step2[p]['steps']} | {step2[p]['flops_per_step']:.3g} | {step2[p]['flops']:.3g} |"
          for p in paths], "",
        "| path | steps | training s | evaluation s | ms/step | batch / forward / backward / step / other (ms per step) "
        "| training time to reach the standard final |", "|---|---|---|---|---|---|---|", *wall_rows, "",
        "Training seconds exclude evaluation; `step` is DeepSpeed's step (gradient all-reduce and the optimizer), "
        "`batch` builds and masks the batch and reduces its target count over ranks, `other` is the loop's own "
        "(logging, progress bar). Wall-clock depends on the machine and its load; FLOPs do not.", "",
        f"One-time costs, not counted above: MiniJoint pretraining {f['one_time']['pretraining_flops']:.3g} FLOPs"
        + (f" (the mini head's share is in it); MiniPost step 1b {f['one_time']['minipost_flops']:.3g} FLOPs."
           if f["one_time"]["minipost_flops"] else "."), "",
        "## Curves at equal FLOP marks (test / dev)", "",
        "| path | TFLOP | training s | zero-shot acc | retrieval top-1 | target MLM loss |", "|---|---|---|---|---|---|",
        *[f"| {p} | {r['flops'] / 1e12:.3g} | {r.get('train_seconds', 0):.1f} | {pct(r['zero_shot_accuracy'])} / "
          f"{pct(r.get('dev_zero_shot_accuracy'))} | {pct(r['retrieval_top1'])} / {pct(r.get('dev_retrieval_top1'))} | "
          f"{r['eval_loss']:.3f} |" for p in paths for r in curves[p]], "",
        f"Retrieval (dev-chosen best, test): standard {pct(f['retrieval']['standard_best'])}%, MiniJoint "
        f"{pct(f['retrieval']['mini_best'])}% (chance {pct(f['retrieval']['chance'])}%).", "",
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
        "## Wall-clock by stage (s)", "", "Launch to exit, a resumed stage's segments summed (a kept stage: as "
        "recorded when it ran); total: this invocation.", "", "| stage | s |", "|---|---|",
        *[f"| {k_} | {v:.0f} |" for k_, v in timings.items()],
    ]


def write_demo_report(out: str, config: dict, timings: dict, task_dirs: list, paths: tuple,
                      analysis: dict, finetune_attempts: list) -> dict:
    d = load_instance(out, task_dirs, paths)
    f = demo_figures(d, config, analysis, paths)
    curves, acc = d["curves"], f["verdict"]
    baseline = d["meta"]["lexical_overlap_baseline_accuracy"]
    write_demo_plots(out, curves, analysis, f["source_mean"])
    lines = demo_markdown(config, timings, paths, analysis, finetune_attempts, f, curves, baseline)
    run = DemoDir(out)
    write_text(run.report_md, "\n".join(lines) + "\n")
    status = "met" if acc["met"] else "NOT met"
    report = {"config": config, "verdict": acc, "verdict_met": acc["met"], "retrieval": f["retrieval"],
              "pretraining": f["pretraining"], "step2": f["step2"], "wall_clock_to_reach": f["wall_clock_to_reach"],
              "one_time_flops": f["one_time"], "source_accuracy": d["sources"],
              "source_accuracy_mean": f["source_mean"], "lexical_overlap_baseline": baseline,
              "finetune_attempts": finetune_attempts, "oracle": analysis["oracle"], "analysis": analysis,
              "curves": curves, "timings": timings}
    write_json(run.report, report)
    first = acc["first_crossing"]
    report["summary_text"] = (
        f"\nseed {config['seed']}: zero-shot accuracy (test, ±{100 * acc['tolerance']:.1f} points at 95%; best chosen "
        f"on dev): standard final {pct(acc['standard_final'])}% / best {pct(acc['standard_best'])}%, MiniJoint final "
        f"{pct(acc['mini_final'])}% / best {pct(acc['mini_best'])}%"
        + (f", MiniPost best {pct(acc['minipost_best'])}%" if "minipost_best" in acc else "")
        + f" (source {pct(f['source_mean'])}%, oracle {pct(analysis['oracle']['zero_shot_accuracy'])}%, chance 33.3%)\n"
        + ("MiniJoint never holds the standard final; " if acc["flops_saving_to_reach"] is None else
           f"MiniJoint reaches and holds the standard final with {times(acc['flops_saving_to_reach'], acc['flops_saving_upper_bound'])} "
           "fewer step-2 FLOPs; ")
        + f"first crossing {times(first['saving'], first['saving_upper_bound'])}; best gap "
        f"{acc['best_gap_points']:.1f} points; verdict {status}\nreport: {run.report_md}")
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
        first = v.get("first_crossing", {})
        wall = r.get("wall_clock_to_reach", {}).get("mini", {}).get("wall_clock_saving")
        rows.append(f"| {c['seed']} | {c['lexicon_size']} | {c['word_order']} | {pct(r['source_accuracy_mean'])} | "
                    f"{restarts} | {pct(r['oracle']['zero_shot_accuracy'])} | "
                    + " | ".join(pct(v.get(k)) for k in keys)
                    + f" | {times(v['flops_saving_to_reach'], v['flops_saving_upper_bound'])} | "
                    f"{times(first.get('saving'), first.get('saving_upper_bound'))} | "
                    f"{'-' if wall is None else f'{wall:.2f}x'} | {'met' if r['verdict_met'] else 'NOT met'} |")
    met = sum(r["verdict_met"] for r in reports)
    return [
        "| seed | lexicon | target order | source | restarts | oracle | standard final | standard best | "
        "MiniJoint final | MiniJoint best | MiniPost best | MiniJoint FLOP saving, held | first crossing | "
        "wall-clock saving, held | verdict |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        *rows,
        f"| mean ± sd | | | {_mean_sd([r['source_accuracy_mean'] for r in reports])} | | "
        f"{_mean_sd([r['oracle']['zero_shot_accuracy'] for r in reports])} | "
        + " | ".join(_mean_sd([r["verdict"].get(k) for r in reports]) for k in keys) + " | | | | |", "",
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
    write_text(os.path.join(out, INSTANCES_REPORT_MD), "\n".join(lines) + "\n")
    summary = {"config": config, "instances": [{"seed": r["config"]["seed"], "verdict": r["verdict"],
                                                "verdict_met": r["verdict_met"],
                                                "source_accuracy_mean": r["source_accuracy_mean"],
                                                "oracle": r["oracle"]} for r in reports],
               "met": met}
    write_json(os.path.join(out, INSTANCES_REPORT), summary)
    summary["summary_text"] = "\n".join(lines[-1:]) + f"\nreport: {os.path.join(out, INSTANCES_REPORT_MD)}"
    return summary
