"""`mmadapt demo` end to end on tiny sizes, two instances: every stage a real 2-rank launcher run, from
mmadapt installed with `pip install .` (not editable) into a fresh virtual environment and started
outside the checkout.

What is checked is the demo's bookkeeping, not the method's quality (tiny models learn little): the dev
split drives every "best", the marks resolve the saving, the three paths share the FLOP marks, MiniPost
is a row of its own, and --instances reports each instance and their spread.
"""

import json
import os
import site
import subprocess
import sys

import pytest

from mmadapt.verdict import dev_best, noise_tolerance

from conftest import REPO

pytestmark = pytest.mark.slow

TINY = ["--lexicon_size", "40", "--source_sentences", "800", "--target_sentences", "800",
        "--parallel_pairs", "40", "--parallel_dev", "30", "--task_train", "64", "--task_dev", "30",
        "--task_test", "24", "--hidden_size", "32", "--num_layers", "4", "--mini_layers", "1", "--seq_len", "48",
        "--pretrain_steps", "6", "--minipost_steps", "4", "--batch", "8", "--finetune_seeds", "0", "1",
        "--finetune_epochs", "1", "--full_steps", "10", "--eval_marks", "10", "--nproc", "2",
        "--instances", "2", "--seed", "3", "--finetune_min_dev", "0.99", "--finetune_restarts", "1"]


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """A fresh venv with mmadapt installed as a wheel; torch, DeepSpeed and the rest come from this
    environment's site-packages (a .pth line), so nothing is downloaded."""
    env_dir = tmp_path_factory.mktemp("fresh") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env_dir)], check=True)
    python = str(env_dir / "bin" / "python")
    purelib = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    with open(os.path.join(purelib, "deps.pth"), "w") as fh:
        fh.write(site.getsitepackages()[0] + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", python, "install", "-q", "--no-deps",
                    "--no-build-isolation", "--no-index", REPO], check=True, capture_output=True)
    where = subprocess.run([python, "-c", "import mmadapt; print(mmadapt.__file__)"], capture_output=True, text=True,
                           check=True, cwd=str(env_dir)).stdout.strip()
    assert where.startswith(purelib), where  # the installed copy, not the checkout
    # the prebuilt ops and the pinned ninja of this environment (no rebuild)
    env = {**os.environ, "TORCH_EXTENSIONS_DIR": os.environ["TORCH_EXTENSIONS_DIR"],
           "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")}
    return python, env


@pytest.fixture(scope="module")
def run(tmp_path_factory, installed):
    python, env = installed
    work = tmp_path_factory.mktemp("demo")
    out = str(work / "out")
    proc = subprocess.run([python, "-m", "mmadapt.cli", "demo", "--output_dir", out] + TINY, cwd=str(work),
                          env=env, capture_output=True, text=True, timeout=1500)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    with open(os.path.join(out, "instances.json"), encoding="utf-8") as fh:
        instances = json.load(fh)
    reports = {}
    for seed in (3, 4):
        with open(os.path.join(out, f"seed-{seed}", "report.json"), encoding="utf-8") as fh:
            reports[seed] = json.load(fh)
    return out, instances, reports


def curve(out, path):
    with open(os.path.join(out, f"step2-{path}", "eval.jsonl"), encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def test_instances_report_each_verdict_and_the_spread(run):
    out, instances, reports = run
    assert [i["seed"] for i in instances["instances"]] == [3, 4]
    assert instances["met"] == sum(r["verdict_met"] for r in reports.values())
    text = open(os.path.join(out, "instances.md"), encoding="utf-8").read()
    assert "| 3 |" in text and "| 4 |" in text and "| mean ± sd |" in text
    assert f"met on {instances['met']} of 2 instances" in text
    # two different instances: different data, different models
    data = [open(os.path.join(out, f"seed-{s}", "data", "source.train.txt")).read() for s in (3, 4)]
    assert data[0] != data[1]


def test_demo_table_lines_up_finished_reports_and_refuses_other_files(run, tmp_path):
    out, instances, reports = run
    paths = [os.path.join(out, f"seed-{s}", "report.json") for s in (3, 4)]
    proc = subprocess.run([sys.executable, os.path.join(REPO, "benchmarks", "demo_table.py"), *paths],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    rows = [line for line in proc.stdout.splitlines() if line.startswith(("| 3 |", "| 4 |"))]
    assert len(rows) == 2 and all("| 40 | source |" in row for row in rows), proc.stdout
    assert f"met on {instances['met']} of 2 instances" in proc.stdout
    for text in ("not json", '{"verdict": {}}'):  # not JSON; JSON but not a demo report
        bad = tmp_path / "report.json"
        bad.write_text(text)
        proc = subprocess.run([sys.executable, os.path.join(REPO, "benchmarks", "demo_table.py"), paths[0], str(bad)],
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1 and str(bad) in proc.stderr, text
        assert proc.stdout == ""  # no half table


def test_report_files_and_the_three_rows(run):
    out, _, reports = run
    one = os.path.join(out, "seed-3")
    for name in ("report.md", "report.json", "zero_shot_vs_flops.png", "retrieval_vs_flops.png",
                 "mlm_loss_vs_flops.png", "layer_similarity.png"):
        assert os.path.getsize(os.path.join(one, name)) > 0, name
    text = open(os.path.join(one, "report.md"), encoding="utf-8").read()
    for needle in ("## Verdict", "mini-model (MiniPost)", "Dictionary oracle", "Lexical-overlap baseline",
                   "Unigram entropy", "MiniPost step 1b", "## Where the embeddings land"):
        assert needle in text, needle
    report = reports[3]
    assert len(report["source_accuracy"]) == 2  # two task models, after one restart below the dev bar
    attempts = report["finetune_attempts"]
    assert [a["seed"] for a in attempts] == [0, 2, 1] and [a["kept"] for a in attempts] == [False, True, True]
    assert os.path.isdir(os.path.join(one, "finetune-2"))
    # wall-clock beside FLOPs: training seconds grow mark by mark, the phases of a step add up to less than it
    for path in ("full", "mini", "minipost"):
        seconds = [r["train_seconds"] for r in curve(one, path)]
        assert seconds[0] < 1.0 and all(b > a for a, b in zip(seconds, seconds[1:])), (path, seconds)
        s2 = report["step2"][path]
        assert 0 < sum(s2["phase_ms_per_step"].values()) <= s2["ms_per_step"] and s2["eval_seconds"] > 0
    assert "training time to reach the standard final" in text
    assert set(report["curves"]) == {"full", "mini", "minipost"}
    assert report["one_time_flops"]["minipost_flops"] > 0
    assert 0.0 <= report["oracle"]["zero_shot_accuracy"] <= 1.0
    sim = report["analysis"]["layer_similarity"]
    assert set(sim) == {"step 0 (random)", "dictionary oracle", "full best", "mini best", "minipost best"}
    assert all(len(v["cosine"]) == 5 for v in sim.values())  # embeddings + 4 layers
    assert sim["dictionary oracle"]["cosine"][0] > sim["step 0 (random)"]["cosine"][0]


def test_marks_at_equal_flops_and_fine_enough(run):
    out, _, reports = run
    one = os.path.join(out, "seed-3")
    report = reports[3]
    curves = {p: curve(one, p) for p in ("full", "mini", "minipost")}
    budget = curves["full"][-1]["flops"]
    for path, c in curves.items():
        assert len(c) == 11, path  # step 0 and 10 marks
        assert c[0]["flops"] == 0 and 0 < c[1]["flops"] <= budget / 10 + report["step2"][path]["flops_per_step"]
        per_step = report["step2"][path]["flops_per_step"]
        for k, (mark, reference) in enumerate(zip(c[1:], curves["full"][1:]), 1):
            assert abs(mark["flops"] - reference["flops"]) <= k * per_step / 2 + 1, (path, k)
    assert report["step2"]["mini"]["steps"] > report["step2"]["minipost"]["steps"] > report["step2"]["full"]["steps"]


def test_every_best_is_chosen_on_dev_and_scored_on_test(run):
    out, _, reports = run
    one = os.path.join(out, "seed-3")
    full, mini = curve(one, "full"), curve(one, "mini")
    v = reports[3]["verdict"]
    key = "zero_shot_accuracy"
    for path, c in (("standard", full), ("mini", mini)):
        after = c[1:]
        assert all("dev_" + key in r for r in after)
        chosen = max(after, key=lambda r: (r["dev_" + key], -r["flops"]))  # by hand: dev picks, test scores
        assert v[f"{path}_best"] == chosen[key] == dev_best(c, key)[key]
        assert v[f"{path}_best_flops"] == chosen["flops"]
    assert v["standard_final"] == full[-1][key] and v["mini_final"] == mini[-1][key]
    # the held crossing: from its mark on every MiniJoint mark is within the test noise of the standard
    # final, and the mark before it is not (the rule itself is tested on hand-made curves, test_verdict.py)
    bar = full[-1][key] - noise_tolerance(full[-1][key], 24)  # --task_test 24
    assert v["tolerance"] == pytest.approx(noise_tolerance(full[-1][key], 24))
    if v["reach_mark"] is None:
        assert v["flops_saving_to_reach"] is None and mini[-1][key] < bar
    else:
        held = mini[v["reach_mark"]:]
        assert all(r[key] >= bar - 1e-9 for r in held)
        assert v["reach_mark"] == 1 or mini[v["reach_mark"] - 1][key] < bar
        assert v["flops_saving_to_reach"] == pytest.approx(full[-1]["flops"] / held[0]["flops"])
    assert v["checks"]["mini_best_within_2_points"] == (v["mini_best"] >= v["standard_best"] - 0.02 - 1e-9)
    assert reports[3]["verdict_met"] == all(v["checks"].values())
    assert "task_models_learn_the_task" in v["checks"] and "standard_converged" in v["checks"]
    # the pack's best embeddings are the dev-chosen evaluation's
    pack = json.load(open(os.path.join(one, "step2-mini", "pack.json")))
    assert pack["best_step"] * reports[3]["step2"]["mini"]["flops_per_step"] == pytest.approx(v["mini_best_flops"])
