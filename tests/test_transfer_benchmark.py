"""benchmarks/transfer.py end to end on tiny generated text: every stage a real launcher run (about 2 minutes).

Generated languages stand in for ../shared/data, which a clean clone does not have."""

import importlib.util
import json
import os

import pytest

from conftest import REPO
from mmadapt.synthetic import SyntheticConfig, generate

pytestmark = pytest.mark.slow

PATHS = ("full", "minijoint", "minipost")
TINY = ["--vocab_size", "120", "--hidden_size", "32", "--num_layers", "3", "--mini_layers", "1",
        "--seq_len", "32", "--batch", "8", "--pretrain_steps", "6", "--minipost_steps", "4",
        "--full_steps", "4", "--eval_marks", "2", "--parallel_limit", "30", "--nproc", "1"]


def load_benchmark():
    spec = importlib.util.spec_from_file_location("transfer", os.path.join(REPO, "benchmarks", "transfer.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("transfer")
    data = str(root / "data")
    generate(SyntheticConfig(seed=0, lexicon_size=40, source_sentences=600, target_sentences=600,
                             parallel_pairs=30, task_train=3, task_test=3), data)
    d = lambda name: os.path.join(data, name)  # noqa: E731
    transfer = load_benchmark()
    text_run, cipher_run = str(root / "text"), str(root / "cipher")
    assert transfer.main(["--output", text_run, "--source_text", d("source.train.txt"),
                          "--source_eval", d("source.test.txt"), "--target_text", d("target.train.txt"),
                          "--target_eval", d("target.test.txt"), "--parallel", d("parallel.tsv")] + TINY) == 0
    assert transfer.main(["--output", cipher_run, "--target", "cipher", "--pretrained", text_run,
                          "--source_eval", d("source.test.txt")] + TINY) == 0
    return [json.load(open(os.path.join(run, "transfer.json"), encoding="utf-8")) | {"dir": run}
            for run in (text_run, cipher_run)]


def step_flops(run_dir, path):
    summary = json.load(open(os.path.join(run_dir, f"step2-{path}", "summary.json"), encoding="utf-8"))
    return summary["flops"] / summary["steps"], summary["steps"]


def test_every_path_is_evaluated_at_the_same_flop_marks(runs):
    for report in runs:
        full_step, full_steps = step_flops(report["dir"], "full")
        marks = [r["flops"] for r in report["curves"]["full"]]
        assert len(marks) == 3 and marks[0] == 0
        for path in ("minijoint", "minipost"):
            per_step, steps = step_flops(report["dir"], path)
            assert per_step < full_step and steps > full_steps  # cheaper steps, more of them, one budget
            theirs = [r["flops"] for r in report["curves"][path]]
            assert len(theirs) == len(marks)
            for i, (a, b) in enumerate(zip(marks, theirs)):
                assert abs(a - b) <= i * per_step / 2 + 1e-6 * a, (path, i, a, b)  # rounding to whole steps


def test_reach_flops_agree_with_the_curves(runs):
    for report in runs:
        final = report["standard_final_retrieval"]
        assert final == report["curves"]["full"][-1]["retrieval_top1"]
        for path in PATHS:
            reached = [r["flops"] for r in report["curves"][path]
                       if r["flops"] > 0 and r["retrieval_top1"] >= final - 1e-9]
            assert report["reach_flops"][path] == (reached[0] if reached else None), path


def test_cipher_oracle_is_perfect_and_the_text_run_has_none(runs):
    text, cipher = runs
    assert text["cipher_oracle_retrieval"] is None
    assert cipher["cipher_oracle_retrieval"] == 1.0
    assert cipher["pretraining"] == text["pretraining"]  # one shared pretraining


def test_report_files(runs):
    for report in runs:
        for name in ("transfer.md", "retrieval_vs_flops.png", "mlm_loss_vs_flops.png"):
            assert os.path.getsize(os.path.join(report["dir"], name)) > 0, name
        md = open(os.path.join(report["dir"], "transfer.md"), encoding="utf-8").read()
        assert "Pretraining sanity" in md and "FLOPs to reach the standard final retrieval" in md
