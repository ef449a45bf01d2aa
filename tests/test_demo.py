"""`mmadapt demo` end to end on tiny sizes: every stage is a real 2-rank launcher run (about 2 minutes)."""

import json
import os

import pytest

from mmadapt import demo
from mmadapt.report import first_reaching

pytestmark = pytest.mark.slow

TINY = ["--lexicon_size", "40", "--source_sentences", "800", "--target_sentences", "800",
        "--parallel_pairs", "40", "--task_train", "64", "--task_test", "24", "--vocab_size", "200",
        "--hidden_size", "32", "--num_layers", "4", "--mini_layers", "1", "--seq_len", "48",
        "--pretrain_steps", "6", "--batch", "8", "--finetune_seeds", "0", "1", "--finetune_epochs", "1",
        "--full_steps", "4", "--eval_marks", "2", "--nproc", "2"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("demo") / "out")
    assert demo.main(["--output", out] + TINY) == 0
    with open(os.path.join(out, "report.json"), encoding="utf-8") as fh:
        return out, json.load(fh)


def curve(out, path):
    with open(os.path.join(out, f"step2-{path}", "eval.jsonl"), encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def test_report_files(run):
    out, report = run
    for name in ("report.md", "report.json", "zero_shot_vs_flops.png", "retrieval_vs_flops.png",
                 "mlm_loss_vs_flops.png"):
        assert os.path.getsize(os.path.join(out, name)) > 0, name
    text = open(os.path.join(out, "report.md"), encoding="utf-8").read()
    assert "## Verdict" in text and "Unigram entropy" in text and "lexical-overlap baseline" in text
    assert len(report["source_accuracy"]) == 2  # one per fine-tuning seed


def test_equal_flop_budgets_and_more_mini_steps(run):
    _, report = run
    full, mini = report["step2"]["full"], report["step2"]["mini"]
    assert mini["steps"] > full["steps"]
    assert mini["flops_per_step"] < full["flops_per_step"]
    assert abs(full["flops"] - mini["flops"]) <= mini["flops_per_step"]


def test_eval_marks_at_matching_flops(run):
    out, report = run
    full, mini = curve(out, "full"), curve(out, "mini")
    per_step = report["step2"]["mini"]["flops_per_step"]
    assert full[0]["flops"] == mini[0]["flops"] == 0  # both start from the same model
    assert len(full) == report["config"]["eval_marks"] + 1
    # Each of the full path's marks has a mini mark at the same FLOPs, to half a mini step per mark.
    for k, rec in enumerate(full[1:], 1):
        assert min(abs(rec["flops"] - m["flops"]) for m in mini) <= k * per_step / 2 + 1, k
    assert abs(full[-1]["flops"] - mini[-1]["flops"]) <= per_step


def test_verdict_agrees_with_the_curves(run):
    out, report = run
    full, mini = curve(out, "full"), curve(out, "mini")
    v = report["verdict"]
    key = v["metric"]
    assert key == "zero_shot_accuracy"
    assert v["standard_final"] == full[-1][key] and v["mini_final"] == mini[-1][key]
    assert v["standard_best"] == max(r[key] for r in full[1:]) and v["mini_best"] == max(r[key] for r in mini[1:])
    assert v["best_gap_points"] == pytest.approx(100 * (v["standard_best"] - v["mini_best"]))
    # Recomputed by hand: the first mini evaluation after step 0 at or above the standard final accuracy.
    reach = next((r["flops"] for r in mini[1:] if r[key] >= full[-1][key] - 1e-9), None)
    assert v["mini_flops_to_reach_standard_final"] == reach
    assert reach == first_reaching([r for r in mini if r["flops"] > 0], key, full[-1][key])
    saving = None if reach is None else full[-1]["flops"] / reach
    assert v["flops_saving_to_reach"] == (None if saving is None else pytest.approx(saving))
    assert v["checks"]["mini_best_within_2_points"] == (v["mini_best"] >= v["standard_best"] - 0.02)
    assert v["checks"]["mini_reaches_standard_final_with_2x_fewer_flops"] == (saving is not None and saving >= 2.0)
    assert v["checks"]["both_well_above_chance"] == (min(v["standard_best"], v["mini_best"]) >= 1 / 3 + 0.10)
    pre = report["pretraining"]
    assert pre["primary_below_entropy_by"] == pytest.approx(pre["unigram_entropy"] - pre["primary_loss"])
