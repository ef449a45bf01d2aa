"""benchmarks/same_figures.py on hand-made runs: seconds and the runs' own paths aside, any figure that
moves (a loss in its last digit) is a difference, and so is a stage only one run completed."""

import importlib.util
import json
import os

import pytest

from conftest import REPO


@pytest.fixture(scope="module")
def same():
    spec = importlib.util.spec_from_file_location("same_figures", os.path.join(REPO, "benchmarks", "same_figures.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def make_run(root, loss=1.7560461581805387, seconds=12.0, stages=("pretrain", "step2-full")):
    root = str(root)
    os.makedirs(root)
    for name in stages:
        os.makedirs(os.path.join(root, name))
        with open(os.path.join(root, name, "metrics.jsonl"), "w") as fh:
            fh.write(json.dumps({"step": 1, "loss": loss, "step_seconds": seconds}) + "\n")
        with open(os.path.join(root, name, "summary.json"), "w") as fh:
            json.dump({"final_loss": loss, "wall_clock_s": seconds, "output_dir": os.path.join(root, name),
                       "train_files": [os.path.join(root, "data", "t.txt")]}, fh)
    with open(os.path.join(root, "report.json"), "w") as fh:
        json.dump({"verdict": {"met": True, "saving": 2.5}, "config": {"output_dir": root}}, fh)
    return str(root)


def test_two_runs_of_one_configuration(same, tmp_path, capsys):
    a = make_run(tmp_path / "a")
    b = make_run(tmp_path / "b", seconds=30.5)  # another clock, another directory: the same figures
    assert same.main(["--runs", a, b]) == 0
    assert "5 files compared: the same figures" in capsys.readouterr().out


def test_a_loss_in_its_last_digit_differs(same, tmp_path, capsys):
    a = make_run(tmp_path / "a")
    b = make_run(tmp_path / "b", loss=1.7560461581805389)
    assert same.main(["--runs", a, b]) == 1
    out = capsys.readouterr().out
    assert "DIFFERS pretrain/metrics.jsonl[0].loss: first 1.7560461581805387, second 1.7560461581805389" in out
    assert "pretrain/summary.json.final_loss" in out and "step2-full/metrics.jsonl[0].loss" in out


def test_a_zero_shot_figure_differs_and_the_clock_does_not(same, tmp_path, capsys):
    """Keys are read as words: "zero_shot_accuracy" is a figure, "tokens_per_s" and "eval_seconds" are clocks."""
    def eval_log(root, accuracy, seconds):
        with open(os.path.join(root, "step2-full", "eval.jsonl"), "w") as fh:
            fh.write(json.dumps({"step": 0, "zero_shot_accuracy": accuracy, "dev_zero_shot_accuracy": 0.5,
                                 "eval_seconds": seconds, "tokens_per_s": 1000 / seconds}) + "\n")

    a, b = make_run(tmp_path / "a"), make_run(tmp_path / "b")
    eval_log(a, 0.4454166666666666, 13.0)
    eval_log(b, 0.4422222226858139, 19.5)
    assert same.main(["--runs", a, b]) == 1
    out = capsys.readouterr().out
    assert "DIFFERS step2-full/eval.jsonl[0].zero_shot_accuracy: first 0.4454166666666666, second 0.4422222226858139" in out
    assert "seconds" not in out and "tokens_per_s" not in out and "dev_zero_shot" not in out


def test_a_stage_only_one_run_completed(same, tmp_path, capsys):
    a = make_run(tmp_path / "a")
    b = make_run(tmp_path / "b", stages=("pretrain",))
    assert same.main(["--runs", a, b]) == 1
    assert "step2-full: a complete stage only in the first run" in capsys.readouterr().out


def test_not_a_run_is_one_line(same, tmp_path, capsys):
    a = make_run(tmp_path / "a")
    (tmp_path / "empty").mkdir()
    assert same.main(["--runs", a, str(tmp_path / "empty")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no complete stage there" in err
