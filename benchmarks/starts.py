"""Step 2's start against the mini-model: real-text benchmark runs from --init normal, overlap and focus,
compared at equal step-2 FLOPs.

    .venv/bin/python benchmarks/realtext.py --output runs/rt-overlap --pretrained runs/rt --init overlap \
        --languages de fr es --paths full mini
    .venv/bin/python benchmarks/realtext.py --output runs/rt-focus --pretrained runs/rt --init focus \
        --languages de fr es --paths full mini
    .venv/bin/python benchmarks/starts.py --runs normal=runs/rt overlap=runs/rt-overlap focus=runs/rt-focus \
        --output benchmarks/results/starts

Per target language found in every run: zero-shot accuracy (test, mean of the task models) at step 0, at
the end and at the dev-chosen best, for the standard path and MiniJoint from each start; the step-2 FLOPs
each needs to reach the standard-from-normal final (held from a mark on, within the test noise; and
first crossing), as a saving against that run's budget; each start's one-time cost; and whether the
start's saving and the mini-model's multiply, overlap or neither. Writes starts.md, starts.json and
starts.png in --output.
"""

from __future__ import annotations

import argparse
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from mmadapt.artifacts import (REALTEXT_REPORT, STARTS_PLOT, STARTS_REPORT, STARTS_REPORT_MD, read_json,  # noqa: E402
                               write_json, write_text)
from mmadapt.errors import ConfigError, exit_status  # noqa: E402

KEY = "zero_shot_accuracy"
PATHS = ("full", "mini")
LABELS = {"full": "standard", "mini": "MiniJoint"}


SAME_IN_EVERY_RUN = ("seed", "task_dev_limit", "task_test_limit", "pairs", "full_steps", "eval_marks", "batch",
                     "seq_len", "data")


def parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--runs", nargs="+", required=True, metavar="INIT=RUN_DIR",
                   help="realtext.py output directories by their start; normal is the reference")
    p.add_argument("--output", required=True, help="directory of starts.md / starts.json / starts.png")
    return p.parse_args(argv)


def load_runs(specs: list) -> dict:
    runs = {}
    for spec in specs:
        init, _, run_dir = spec.partition("=")
        path = os.path.join(run_dir, REALTEXT_REPORT)
        if not run_dir or not os.path.isfile(path):
            raise ConfigError(f"--runs {spec}: no {path}; fix: give INIT=DIR of a finished benchmarks/realtext.py run")
        report = read_json(path)
        if report["config"]["init"] != init:
            raise ConfigError(f"--runs {spec}: that run started step 2 from --init {report['config']['init']}; fix: "
                              f"name it {report['config']['init']}=")
        runs[init] = {"dir": run_dir, "report": report}
    if "normal" not in runs:
        raise ConfigError("--runs: no normal= run, the reference; fix: add the run from --init normal")
    # the starts are compared on the same examples at the same marks: the runs must agree on what sets them
    reference = runs["normal"]["report"]["config"]
    for init, run in runs.items():
        for key in SAME_IN_EVERY_RUN:
            if run["report"]["config"].get(key) != reference.get(key):
                raise ConfigError(f"--runs {init}={run['dir']}: made with --{key} {run['report']['config'].get(key)}, "
                                  f"the normal run with {reference.get(key)}; fix: rerun it with --{key} "
                                  f"{reference.get(key)} (its test, dev and FLOP marks differ otherwise)")
    return runs


def one_time_cost(run_dir: str, lang: str, path: str) -> dict:
    """The start's own cost, kept apart from step 2's FLOPs and seconds (FOCUS's static embeddings)."""
    from mmadapt.artifacts import read_summary

    summary = read_summary(os.path.join(run_dir, f"{lang}-step2-{path}"))
    return {"rows_copied": summary.get("rows_copied"), "vocab_size": summary.get("vocab_size"),
            "focus": summary.get("focus")}


def combine(s_start, s_mini, s_both) -> str:
    """How the start's saving and the mini-model's combine, each a held saving against the same budget."""
    if None in (s_start, s_mini, s_both):
        return "not measurable (a path never held the reference final)"
    product, larger = s_start * s_mini, max(s_start, s_mini)
    if s_both >= 0.8 * product:
        return f"multiply ({s_both:.2f}x against {s_start:.2f} x {s_mini:.2f} = {product:.2f}x)"
    if s_both <= 1.2 * larger:
        return f"overlap ({s_both:.2f}x, about the larger alone, {larger:.2f}x)"
    return f"in between ({s_both:.2f}x; product {product:.2f}x, larger alone {larger:.2f}x)"


def figures(runs: dict) -> dict:
    from mmadapt.verdict import dev_best, noise_tolerance, saving_to_reach

    langs = [lang for lang in runs["normal"]["report"]["targets"]
             if lang != "cipher" and all(lang in r["report"]["targets"] for r in runs.values())]
    out = {}
    for lang in langs:
        reference = runs["normal"]["report"]["targets"][lang]
        ref_curve, tolerance = reference["curves"]["full"], reference["verdict"]["tolerance"]
        rows = {}
        for init, run in runs.items():
            target = run["report"]["targets"][lang]
            for path in PATHS:
                curve = target["curves"][path]
                reach = saving_to_reach(ref_curve, curve, KEY, tolerance)
                rows[f"{init}/{path}"] = {
                    "init": init, "path": path, "step0": curve[0][KEY], "final": curve[-1][KEY],
                    "best": dev_best(curve, KEY)[KEY], "saving": reach["saving"],
                    "saving_upper_bound": reach["saving_upper_bound"],
                    "first_crossing": reach["first_crossing"]["saving"], "curve": curve,
                    "one_time": one_time_cost(run["dir"], lang, path)}
        for init in runs:  # the mini-model's own saving from each start: against the standard path from that start
            same, mini = rows[f"{init}/full"]["curve"], rows[f"{init}/mini"]
            tol = noise_tolerance(same[-1][KEY], reference["test_examples"])
            own = saving_to_reach(same, mini["curve"], KEY, tol)
            mini["saving_vs_same_start"], mini["saving_vs_same_start_upper_bound"] = own["saving"], own["saving_upper_bound"]
        combined = {init: combine(rows[f"{init}/full"]["saving"], rows["normal/mini"]["saving"],
                                  rows[f"{init}/mini"]["saving"]) for init in runs if init != "normal"}
        out[lang] = {"reference_final": ref_curve[-1][KEY], "tolerance": tolerance, "baseline": reference["baseline"],
                     "rows": rows, "combined": combined}
    return out


def markdown(f: dict, runs: dict) -> str:
    from mmadapt.report import pct, times

    cfg = runs["normal"]["report"]["config"]
    lines = ["# Step 2's start and the mini-model at equal step-2 FLOPs (real text)", "",
             f"Model {cfg['num_layers']} x {cfg['hidden_size']}, mini-model layers 1..{cfg['mini_layers']}; step 2 "
             f"budget {cfg['full_steps']} standard steps, {cfg['eval_marks']} marks; runs: "
             + ", ".join(f"{k} `{v['dir']}`" for k, v in runs.items()) + ".", "",
             "Zero-shot accuracy (%, test, mean of the task models); best chosen on dev; saving = the budget over "
             "the FLOPs from which a path holds the standard-from-normal final within the test noise (first "
             "crossing beside it); MiniJoint is also held against the standard path's final from its own start; the rows copied or mixed are the start's, its seconds a one-time cost outside "
             "step 2's.", ""]
    for lang, g in f.items():
        lines += [f"## {lang}: reference (standard from normal) final {pct(g['reference_final'])}%, baseline "
                  f"{pct(g['baseline'])}%", "",
                  "| start | path | step 0 | final | best | saving to reach, held | first crossing | MiniJoint against "
                  "the standard path from the same start | rows from the source | one-time seconds |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for r in g["rows"].values():
            one = r["one_time"]
            seconds = one["focus"].get("seconds") if one.get("focus") else None
            first = "-" if r["first_crossing"] is None else f"{r['first_crossing']:.2f}x"
            focus = one.get("focus")
            source_rows = (f"{focus['copied']} copied, {focus['combined']} mixed, {focus['fallen_back']} random"
                           if focus else f"{one.get('rows_copied', '-')} copied of {one.get('vocab_size', '-')}")
            lines.append(f"| {r['init']} | {LABELS[r['path']]} | {pct(r['step0'])} | {pct(r['final'])} | "
                         f"{pct(r['best'])} | {times(r['saving'], r['saving_upper_bound'])} | "
                         f"{first} | {times(r['saving_vs_same_start'], r['saving_vs_same_start_upper_bound']) if r['path'] == 'mini' else '-'} | "
                         f"{source_rows} | "
                         f"{'-' if seconds is None else f'{seconds:.0f}'} |")
        lines += ["", "Start x mini-model: " + "; ".join(f"{init}: {c}" for init, c in g["combined"].items()), "",
                  f"![{lang}]({STARTS_PLOT})", ""]
    return "\n".join(lines)


def plot(path: str, f: dict) -> None:
    from mmadapt.report import plot_panels

    plot_panels(path, {lang: {"lines": [(f"{r['init']} {LABELS[r['path']]}", r["curve"],
                                         "-" if r["path"] == "full" else "--") for r in g["rows"].values()],
                              "hlines": [(g["baseline"], ":", "baseline")]}
                       for lang, g in f.items()}, KEY, "zero-shot accuracy (test)")


def run(args) -> dict:
    runs = load_runs(args.runs)
    f = figures(runs)
    if not f:
        raise ConfigError("--runs: no target language is in every run; fix: run the same --languages in each")
    os.makedirs(args.output, exist_ok=True)
    text = markdown(f, runs)
    write_text(os.path.join(args.output, STARTS_REPORT_MD), text)
    plot(os.path.join(args.output, STARTS_PLOT), f)
    write_json(os.path.join(args.output, STARTS_REPORT),
               {lang: {**g, "rows": {k: {kk: vv for kk, vv in r.items() if kk != "curve"} for k, r in g["rows"].items()}}
                for lang, g in f.items()})
    print(text, flush=True)
    return f


def main(argv=None) -> int:
    args = parse(argv)
    return exit_status(lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())
