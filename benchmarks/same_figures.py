"""Are two finished runs the same run, figure for figure? (a code change checked against the code before it)

    .venv/bin/python benchmarks/same_figures.py --runs /work/demo-before /work/demo-after

For every stage directory both runs hold (a complete stage: summary.json), its metrics.jsonl, eval.jsonl and
summary.json are compared record by record and field by field, then the run's own report (report.json,
realtext.json) the same way; seconds, rates and the runs' own paths aside (benchmarks/replay_demo.py's
rule). Floats are compared exactly: on one machine the same configuration trains the same figures, to the
digit. Exit status 1 on any difference (each printed), 2 on bad input.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from replay_demo import differences  # noqa: E402  (it puts the repository on the path)

from mmadapt.artifacts import (DEMO_REPORT, EVAL_FILE, METRICS_FILE, REALTEXT_REPORT, SUMMARY_FILE, complete,  # noqa: E402
                               read_json, read_jsonl)

STAGE_FILES = (METRICS_FILE, EVAL_FILE, SUMMARY_FILE)
REPORTS = (DEMO_REPORT, REALTEXT_REPORT)
# what differs between two runs of one configuration by design: where they ran, and the clock
PER_RUN = ("config", "summary_text", "output_dir", "run_dir")


def read(path: str):
    return read_jsonl(path) if path.endswith(".jsonl") else read_json(path)


def without_run_paths(value, run_dir: str):
    """The value with its own run directory spelled RUN, and the per-run keys dropped."""
    text = json.dumps(value).replace(run_dir, "RUN")
    value = json.loads(text)
    if isinstance(value, dict):
        value = {k: v for k, v in value.items() if k not in PER_RUN}
    return value


def stages(run_dir: str) -> list:
    return sorted(name for name in os.listdir(run_dir) if complete(os.path.join(run_dir, name)))


def compare(a_dir: str, b_dir: str) -> tuple:
    """(files compared, differences) between two runs."""
    a_dir, b_dir = os.path.abspath(a_dir), os.path.abspath(b_dir)
    compared, problems = [], []
    a_stages, b_stages = stages(a_dir), stages(b_dir)
    for name in sorted(set(a_stages) ^ set(b_stages)):
        problems.append(f"{name}: a complete stage only in {'the first' if name in a_stages else 'the second'} run")
    files = [os.path.join(s, f) for s in sorted(set(a_stages) & set(b_stages)) for f in STAGE_FILES]
    files += list(REPORTS)
    for rel in files:
        a_path, b_path = os.path.join(a_dir, rel), os.path.join(b_dir, rel)
        if not os.path.isfile(a_path) and not os.path.isfile(b_path):
            continue
        if not (os.path.isfile(a_path) and os.path.isfile(b_path)):
            problems.append(f"{rel}: only in {'the first' if os.path.isfile(a_path) else 'the second'} run")
            continue
        diffs, allowed = differences(without_run_paths(read(a_path), a_dir), without_run_paths(read(b_path), b_dir),
                                     rel, names=("first", "second"))
        compared.append(rel)
        problems += diffs + allowed
    return compared, problems


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", nargs=2, required=True, metavar="RUN_DIR", help="two finished run directories")
    args = p.parse_args(argv)
    for run in args.runs:
        if not os.path.isdir(run) or not stages(run):
            print(f"error: --runs {run}: no complete stage there; fix: give two finished run directories "
                  "(mmadapt demo --output, realtext.py --output)", file=sys.stderr)
            return 2
    compared, problems = compare(*args.runs)
    for line in problems:
        print("DIFFERS", line)
    print(f"{len(compared)} files compared: " + ("the same figures" if not problems else f"{len(problems)} differences"))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
