"""Replay a finished `mmadapt demo` run through the current orchestrator without training anything.

    .venv/bin/python benchmarks/replay_demo.py --run runs/demo --output /tmp/replay

Every stage call the current code makes is parsed by the stage's own parser and compared, field by field,
with the run_config.json the recorded run's stage wrote (paths under --output read as under --run); the
recorded stage directory then stands in for the stage, so the later calls (task-model restarts, the
step-2 FLOP plan) see what they saw. Last, the current analysis and report are written from the recorded
stages and compared with the recorded report.json, seconds aside. Exit status 1 on any difference: then
the current code would not reproduce the recorded run's figures. Same configs and the same training code
give the same figures on one machine; this proves the first half without hours of training.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

def is_clock(key: str) -> bool:
    """A key that holds seconds or a rate (it differs between two runs of one configuration). Matched by
    whole words: a substring rule ("_s") once skipped "zero_shot_accuracy", the figure that matters most."""
    words = key.split("_")
    return ("seconds" in words or "timings" in words or key.startswith("wall_clock") or words[-1] == "s"
            or "ms_per_step" in key or "load_average" in key)


def differences(a, b, where: str = "", defaults=None, names=("recorded", "replayed")) -> tuple:
    """(differences, allowances) between recorded ``a`` and replayed ``b`` (keys naming seconds or rates
    skipped). Allowed, and listed apart: a value the stage filled in itself where the plan leaves it None
    (a resolved model size, the tokenizer of a model directory), and a field added to a stage's config
    since the recording, at its default (``defaults``: the stage's config as built with no flags).
    ``names``: what the messages call ``a`` and ``b``."""
    diffs, allowed = [], []
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            if is_clock(key):
                continue
            default = defaults.get(key) if isinstance(defaults, dict) else None
            if key not in a and key in b and isinstance(defaults, dict) and key in defaults and b[key] == default:
                allowed.append(f"{where}.{key}: a field added since, at its default {b[key]!r}")
            elif key not in a or key not in b:
                diffs.append(f"{where}.{key}: only in {names[0] if key in a else names[1]}")
            else:
                d, al = differences(a[key], b[key], f"{where}.{key}", default, names)
                diffs += d
                allowed += al
        return diffs, allowed
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return [f"{where}: {len(a)} items {names[0]}, {len(b)} {names[1]}"], []
        pairs = [differences(x, y, f"{where}[{i}]", names=names) for i, (x, y) in enumerate(zip(a, b))]
        return [d for p in pairs for d in p[0]], [al for p in pairs for al in p[1]]
    if a == b:
        return [], []
    if b is None and defaults is None and a is not None:
        return [], [f"{where}: {a!r}, filled in by the stage (the plan leaves it to the stage)"]
    return [f"{where}: {names[0]} {a!r}, {names[1]} {b!r}"], []


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run", required=True, help="a finished `mmadapt demo` --output_dir")
    p.add_argument("--output", required=True, help="a new directory for the replay (an existing one is refused)")
    args = p.parse_args(argv)
    import dataclasses

    from mmadapt import launch
    from mmadapt.artifacts import DATA_DIR, DemoDir, read_json, read_run_config
    from mmadapt.config import parse_sections, to_dict
    from mmadapt.demo import Demo, DemoConfig
    from mmadapt.stages import interface, parser

    recorded_dir, out = os.path.abspath(args.run), os.path.abspath(args.output)
    recorded_run = DemoDir(recorded_dir)
    if not os.path.isfile(recorded_run.report):
        print(f"error: --run {args.run}: no {os.path.basename(recorded_run.report)}; fix: give a finished "
              "`mmadapt demo` --output_dir", file=sys.stderr)
        return 2
    recorded = read_json(recorded_run.report)
    from mmadapt.demo import DEMO_MARKER

    if os.path.exists(out):  # never replace a directory this script did not just make
        print(f"error: --output {args.output} exists; fix: give a new directory", file=sys.stderr)
        return 2
    os.makedirs(out)
    open(os.path.join(out, DEMO_MARKER), "w").close()
    for entry in (DATA_DIR, DemoDir.tokenizer_name("source"), DemoDir.tokenizer_name("target"), DemoDir.CACHE):
        shutil.copytree(os.path.join(recorded_dir, entry), os.path.join(out, entry), symlinks=True)
    problems, allowances, calls = [], [], []

    def replayed_stage(run_dir, name, stage, argv, nproc, reuse=True):
        sections = parse_sections(parser(stage, raise_errors=True), argv, interface(stage)[1])
        replay = json.loads(json.dumps(to_dict(sections)).replace(out, recorded_dir))
        defaults = {title: dataclasses.asdict(cls()) for title, cls in interface(stage)[1].items()}
        diffs, allowed = differences(read_run_config(os.path.join(recorded_dir, name)), replay, defaults=defaults)
        problems.extend(f"{name}: {d}" for d in diffs)
        allowances.extend(f"{name}: {a}" for a in allowed)
        calls.append(name)
        shutil.copytree(os.path.join(recorded_dir, name), os.path.join(out, name), symlinks=True)
        return None

    launch.run_stage = replayed_stage
    known = {f.name for f in dataclasses.fields(DemoConfig)}
    renamed = {"seq_len": "max_seq_length", "batch": "global_batch_size", "init_range": "initializer_range",
               "minipost_new_layers": "new_layers"}  # the demo's old spellings (still accepted as flags)
    config = {renamed.get(k, k): v for k, v in recorded["config"].items() if renamed.get(k, k) in known}
    cfg = DemoConfig(**{**config, "output_dir": out, "reuse": True})
    report = Demo(cfg).run()
    diffs, allowed = differences(
        {k: v for k, v in recorded.items() if k not in ("config", "summary_text")},
        {k: v for k, v in json.loads(json.dumps(report).replace(out, recorded_dir)).items()
         if k not in ("config", "summary_text")})
    problems += [f"report: {d}" for d in diffs + allowed]  # a report has nothing to fill in
    print(f"replayed {len(calls)} stage calls: {', '.join(calls)}")
    for line in allowances:
        print("allowed", line)
    for line in problems:
        print("DIFFERS", line)
    print("same configs and the same report" if not problems else f"{len(problems)} differences")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
