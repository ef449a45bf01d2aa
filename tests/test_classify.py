"""`--task classify`: one text, an integer label 0..N-1. Its checks, macro-F1, and the task through
fine-tuning (one 2-rank ZeRO-3 run), evaluation, step 2's zero-shot scoring and the Hugging Face export.

The task is learnable by construction: each text holds exactly one of three marker words, at a random
place among filler words, and the label is which one.
"""

import json
import os
import random

import pytest
import torch

from mmadapt.config import ModelConfig, resolve_model
from mmadapt.errors import ConfigError
from mmadapt.hf_io import export_hf
from mmadapt.model import MiniJointForMaskedLM
from mmadapt.tasks import confusion_matrix, load_examples, macro_f1, task_spec
from mmadapt.tokenizer import train_tokenizer

from test_adaptation import (COMMON, NOUNS, VERBS, ZERO3, check_mean_pooled_export, check_task_export,
                             run_stage, write_jsonl)

MARKERS = ["red", "green", "blue"]


def cipher(text: str) -> str:
    """The target language: every word reversed."""
    return " ".join(w[::-1] for w in text.split())


def _one_line_error(capsys, *needles):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "fix:" in err[0], err
    for needle in needles:
        assert needle in err[0], (needle, err[0])


# ------------------------------------------------------------------------------------------ macro-F1
def test_macro_f1_on_a_hand_made_confusion():
    """By hand: rows gold, columns predicted, 8 examples over labels 0..3.
    label 0: TP 3, FP 1 (a gold 1), FN 1 -> F1 = 2TP / (2TP + FP + FN) = 6/8 = 0.75;
    label 1: TP 2, FP 1 (a gold 0), FN 2 (one called 0, one called 2) -> 4/7;
    label 2: predicted once, never gold -> TP 0, FP 1 -> 0;  label 3: never gold nor predicted -> not counted.
    macro-F1 = (0.75 + 4/7 + 0) / 3 = 37/84 = 0.44047..., accuracy 5/8."""
    confusion = torch.tensor([[3, 1, 0, 0],
                              [1, 2, 1, 0],
                              [0, 0, 0, 0],
                              [0, 0, 0, 0]], dtype=torch.float64)
    assert macro_f1(confusion) == pytest.approx(37 / 84)
    gold = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
    pred = torch.tensor([0, 0, 0, 1, 0, 1, 1, 2])
    assert torch.equal(confusion_matrix(gold, pred, 4), confusion)
    from mmadapt.tasks import classification_scores
    scores = classification_scores(task_spec("classify", 4), confusion)
    assert scores == pytest.approx({"accuracy": 5 / 8, "macro_f1": 37 / 84})
    assert "macro_f1" not in classification_scores(task_spec("xnli"), confusion[:3, :3])
    assert macro_f1(torch.eye(3) * 4) == 1.0  # every label right
    assert macro_f1(torch.tensor([[0.0, 5.0], [0.0, 0.0]])) == 0.0  # all of label 0 called 1: both F1 0


# --------------------------------------------------------------------------------------------- data
@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Classify files (source, and the target cipher), whole-word tokenizers, a tiny exported primary."""
    root = tmp_path_factory.mktemp("classify")
    rng = random.Random(0)

    def rows(n):
        out = []
        for i in range(n):
            words = [rng.choice(NOUNS + VERBS) for _ in range(4)]
            words.insert(rng.randrange(5), MARKERS[i % 3])
            out.append({"text": " ".join(words) + " .", "label": i % 3})
        return out

    train, test, dev = rows(150), rows(45), rows(30)
    (root / "src.txt").write_text("\n".join(r["text"] for r in train) + "\n")
    (root / "tgt.txt").write_text("\n".join(cipher(r["text"]) for r in train) + "\n")
    src_tok = train_tokenizer([str(root / "src.txt")], 60, str(root / "src_tok"), whole_words=True)
    train_tokenizer([str(root / "tgt.txt")], 60, str(root / "tgt_tok"), whole_words=True)
    cfg = resolve_model(ModelConfig(model="tiny", hidden_size=32, num_layers=4, num_heads=4, intermediate_size=64,
                                    max_position_embeddings=66, mini_layers=2, initializer_range=0.1),
                         tokenizer_vocab=len(src_tok))  # std 0.1: a random tiny body leaves the ln 3 plateau sooner
    torch.manual_seed(0)
    export_hf(MiniJointForMaskedLM(cfg).state_dict(), cfg, str(root / "primary"), str(root / "src_tok"))
    target = [{**r, "text": cipher(r["text"])} for r in test]
    return {
        "root": root, "primary": str(root / "primary"), "tgt": str(root / "tgt.txt"),
        "tgt_tok": str(root / "tgt_tok"),
        "train": write_jsonl(root / "train.jsonl", train), "test": write_jsonl(root / "test.jsonl", test),
        "tgt_test": write_jsonl(root / "tgt.test.jsonl", target),
        "tgt_dev": write_jsonl(root / "tgt.dev.jsonl", [{**r, "text": cipher(r["text"])} for r in dev]),
        # a label the 3-label model does not have: refused wherever a fine-tuned model reads it
        "beyond": write_jsonl(root / "beyond.jsonl", target[:2] + [{"text": target[2]["text"], "label": 3}]),
    }


def test_bad_classify_data_is_one_line_and_nothing_written(world, tmp_path, capsys):
    from mmadapt.stages import entry

    finetune_main = entry("finetune")

    out = tmp_path / "out"
    base = ["--deepspeed_config", ZERO3, "--model", world["primary"], "--output_dir", str(out)]
    cases = [  # (rows, extra flags, what the line must say)
        ([{"text": "a red dog", "label": 0}, {"label": 1}], [], ["bad.jsonl:2", "missing field(s) ['text']"]),
        ([{"text": "a red dog"}], [], ["bad.jsonl:1", "missing field(s) ['label']"]),
        ([{"text": "a red dog", "label": "positive"}], [], ["bad.jsonl:1", "label 'positive' is not an integer"]),
        ([{"text": "a red dog", "label": 1.5}], [], ["label 1.5 is not an integer"]),
        ([{"text": "a red dog", "label": True}], [], ["label True is not an integer"]),
        ([{"text": "a", "label": 1}, {"text": "b", "label": -1}], [], ["bad.jsonl:2", "label -1 is outside 0..N-1"]),
        ([{"text": "a", "label": 1}, {"text": "b", "label": 3}], ["--num_labels", "3"],
         ["bad.jsonl:2", "label 3 is outside 0..2 (3 labels)", "--num_labels 4"]),
        ([{"text": "a", "label": 0}, {"text": "b", "label": 0}], [], ["every label is 0", "--num_labels"]),
        ([{"text": "a", "label": 0}], ["--num_labels", "1"], ["--num_labels 1", "at least 2 labels"]),
        # the test file is checked against the N the training file gave (0..2 here)
        ([{"text": "a", "label": 2}], ["--eval_files", world["beyond"]],
         ["beyond.jsonl:3", "label 3 is outside 0..2 (3 labels)"]),
    ]
    for rows, extra, needles in cases:
        path = write_jsonl(tmp_path / "bad.jsonl", rows)
        assert finetune_main(base + ["--task", "classify", "--train_files", path, *extra]) == 2, rows
        _one_line_error(capsys, *needles)
        assert not out.exists(), rows
    assert finetune_main(base + ["--task", "xnli", "--num_labels", "4", "--train_files", world["train"]]) == 2
    _one_line_error(capsys, "--num_labels 4", "fixed set of 3 labels")
    # a tsv's labels are strings of digits: integers all the same
    (tmp_path / "ok.tsv").write_text("text\tlabel\na red dog\t2\nthe blue cat\t0\n")
    assert [e["label"] for e in load_examples(task_spec("classify"), str(tmp_path / "ok.tsv"))] == [2, 0]


def test_pipeline_config_takes_classify_and_refuses_an_unknown_task(world, tmp_path):
    import yaml

    from mmadapt.pipeline import load_config

    cfg = {"output_dir": str(tmp_path / "pipe"), "source": {"model": world["primary"]},
           "task": {"name": "classify", "train_file": world["train"], "args": {"num_labels": 3}},
           "languages": [{"name": "xx", "train_files": [world["tgt"]], "task_eval_file": world["tgt_test"]}]}
    path = tmp_path / "pipe.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert load_config(str(path)).task.name == "classify"
    cfg["task"]["name"] = "clasify"
    path.write_text(yaml.safe_dump(cfg))
    with pytest.raises(ConfigError, match="task name 'clasify' is not one of xnli, pawsx, classify, mlqa"):
        load_config(str(path))
    assert not (tmp_path / "pipe").exists()


# ------------------------------------------------------------------------------ real runs (launcher)
@pytest.fixture(scope="module")
def finetuned(world):
    """The one multi-rank run: 2 ZeRO-3 ranks through the deepspeed launcher, N read from the data."""
    out = str(world["root"] / "ft")
    run_stage("finetune.py", COMMON + ["--task", "classify", "--model", world["primary"], "--train_files",
                                       world["train"], "--eval_files", world["test"], "--max_steps", 80,
                                       "--lr", 3e-3, "--warmup_steps", 5, "--dropout", 0.0, "--output_dir", out],
              ranks=2)
    return out


@pytest.mark.slow
def test_finetuning_learns_the_task_and_records_n(finetuned):
    meta = json.load(open(os.path.join(finetuned, "finetune.json")))
    summary = json.load(open(os.path.join(finetuned, "summary.json")))
    assert summary["world_size"] == 2
    assert meta["task"] == "classify" and meta["num_labels"] == 3
    assert json.load(open(os.path.join(finetuned, "run_config.json")))["finetune"]["num_labels"] == 3
    # chance is 1/3 on the balanced test file
    assert meta["source_score"]["accuracy"] >= 0.8 and meta["source_score"]["macro_f1"] >= 0.8, meta["source_score"]


@pytest.mark.slow
def test_evaluate_writes_accuracy_and_macro_f1(world, finetuned, tmp_path, capsys):
    from mmadapt.artifacts import load_finetuned
    from mmadapt.stages import entry

    evaluate_main = entry("evaluate")
    from mmadapt.tasks import predict_labels

    out = tmp_path / "eval"
    run_stage("evaluate.py", ["--model", finetuned, "--language_packs", "source", "--eval_files", world["test"],
                              "--output_dir", out])
    result = json.load(open(out / "results.json"))
    assert result["task"] == "classify"
    row = result["results"][0]
    meta = json.load(open(os.path.join(finetuned, "finetune.json")))
    assert row["accuracy"] == meta["source_score"]["accuracy"] and row["examples"] == 45
    # macro-F1 again, from the predictions, as precision and recall per label
    spec, model, tok, meta = load_finetuned(finetuned)
    gold, pred = predict_labels(model, tok, load_examples(spec, world["test"]), meta["max_seq_length"])
    f1s = []
    for label in set(gold.tolist()) | set(pred.tolist()):
        tp = int(((pred == label) & (gold == label)).sum())
        precision, recall = tp / max(1, int((pred == label).sum())), tp / max(1, int((gold == label).sum()))
        f1s.append(2 * precision * recall / (precision + recall) if tp else 0.0)
    assert row["macro_f1"] == pytest.approx(sum(f1s) / len(f1s))
    assert "macro_f1" in (out / "results.md").read_text()

    capsys.readouterr()
    assert evaluate_main(["--model", finetuned, "--eval_files", world["beyond"], "--output_dir",
                          str(tmp_path / "no")]) == 2
    _one_line_error(capsys, "beyond.jsonl:3", "label 3 is outside 0..2 (3 labels)")
    assert not (tmp_path / "no").exists()


@pytest.fixture(scope="module")
def pack(world, finetuned):
    """Step 2 (one rank) scored zero-shot by the classify model, its best chosen by dev macro-F1. Seed 1:
    seed 0 would draw the primary's own embedding rows again, which the cipher (it keeps word frequencies,
    so token ids) turns into a perfect translation, and every figure would be 1."""
    out = str(world["root"] / "pack")
    run_stage("adapt.py", COMMON + ["--model", world["primary"], "--through", "mini", "--tokenizer", world["tgt_tok"],
                                    "--train_files", world["tgt"], "--task_models", finetuned, "--task_eval_file",
                                    world["tgt_test"], "--task_dev_file", world["tgt_dev"], "--select_by",
                                    "zero_shot_macro_f1", "--eval_every", 2, "--max_steps", 4, "--lr", 5e-3, "--seed", 1,
                                    "--output_dir", out, "--cache_dir", world["root"] / "cache"])
    return out


@pytest.mark.slow
def test_step2_reports_zero_shot_accuracy_and_macro_f1(world, finetuned, pack, tmp_path, capsys):
    from mmadapt.stages import entry

    adapt_main = entry("adapt")
    from mmadapt.stages.evaluate import evaluate_pack

    evals = [json.loads(line) for line in open(os.path.join(pack, "eval.jsonl"))]
    assert [e["step"] for e in evals] == [0, 2, 4]
    for e in evals:
        for key in ("zero_shot_accuracy", "zero_shot_macro_f1", "dev_zero_shot_accuracy", "dev_zero_shot_macro_f1"):
            assert 0.0 <= e[key] <= 1.0, (key, e)
    meta = json.load(open(os.path.join(pack, "pack.json")))
    best = max(evals[1:], key=lambda e: e["dev_zero_shot_macro_f1"])  # the earliest of equals
    assert (meta["best_step"], meta["best_zero_shot_macro_f1"]) == (best["step"], best["dev_zero_shot_macro_f1"])
    # the last evaluation read the final embeddings: launchers/evaluate.py scores them alike
    last = evaluate_pack(finetuned, pack, load_examples(task_spec("classify", 3), world["tgt_test"]), "last")
    assert evals[-1]["zero_shot_accuracy"] == pytest.approx(last["accuracy"])
    assert evals[-1]["zero_shot_macro_f1"] == pytest.approx(last["macro_f1"])

    base = ["--deepspeed_config", ZERO3, "--model", world["primary"], "--tokenizer", world["tgt_tok"],
            "--train_files", world["tgt"], "--task_models", finetuned, "--output_dir", str(tmp_path / "out")]
    capsys.readouterr()
    assert adapt_main(base + ["--task_eval_file", world["tgt_test"], "--select_by", "zero_shot_f1"]) == 2
    _one_line_error(capsys, "--select_by zero_shot_f1", "zero_shot_accuracy, zero_shot_macro_f1")
    assert adapt_main(base + ["--task_eval_file", world["beyond"]]) == 2
    _one_line_error(capsys, "beyond.jsonl:3", "label 3 is outside 0..2")
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_export_predicts_what_evaluate_scores(world, finetuned, pack, tmp_path):
    """<s> pooling (the fixture's model) exports as plain transformers; mean pooling (fine-tuned here, in one
    process) with its modeling file, loaded with trust_remote_code=True. Both predict what evaluate scores."""
    from transformers import XLMRobertaForSequenceClassification

    from mmadapt.cli import main as cli_main

    # every text has six words: trailing full stops make their lengths differ, so the batch has padding to skip
    examples = [{**e, "a": e["a"] + " ." * (i % 3)}
                for i, e in enumerate(load_examples(task_spec("classify", 3), world["tgt_test"]))]
    out = tmp_path / "classify-xx"
    assert cli_main(["export", "--finetuned", finetuned, "--language_pack", pack, "--output_dir", str(out)]) == 0
    hf_model, predicted = check_task_export(out, finetuned, pack, examples)
    assert type(hf_model) is XLMRobertaForSequenceClassification
    assert hf_model.config.num_labels == 3 and hf_model.config.id2label == {0: "0", 1: "1", 2: "2"}
    assert len(set(predicted.tolist())) > 1  # more than one class predicted: the comparison can fail

    mean_ft = world["root"] / "ft-mean"
    run_stage("finetune.py", COMMON + ["--task", "classify", "--model", world["primary"], "--train_files",
                                       world["train"], "--max_steps", 30, "--lr", 3e-3, "--dropout", 0.0,
                                       "--pooling", "mean", "--output_dir", mean_ft])
    mean_out = tmp_path / "classify-xx-mean"
    assert cli_main(["export", "--finetuned", str(mean_ft), "--language_pack", pack, "--output_dir",
                     str(mean_out)]) == 0
    check_mean_pooled_export(mean_out)
    hf_model, predicted = check_task_export(mean_out, str(mean_ft), pack, examples, trust_remote_code=True)
    assert hf_model.config.num_labels == 3 and hf_model.config.id2label == {0: "0", 1: "1", 2: "2"}
    assert len(set(predicted.tolist())) > 1
