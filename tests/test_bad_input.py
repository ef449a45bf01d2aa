"""Bad input to the pretraining launcher: one line naming the problem and the fix, exit 2, nothing written.

These run the launcher's main() in-process: every check happens before the process group starts.
"""

import json
import os

import pytest

from mmadapt.config import TrainConfig
from mmadapt.ds_config import load_ds_json, resolve_ds_config
from mmadapt.errors import ConfigError
from mmadapt.stages import entry

from conftest import REPO

main = entry("minijoint")

ZERO3_CPU = os.path.join(REPO, "ds_configs", "zero3_cpu.json")


@pytest.fixture
def run_args(tmp_path, text_and_tokenizer):
    text, tok_dir, _ = text_and_tokenizer

    def make(**over):
        args = {"--deepspeed_config": ZERO3_CPU, "--model": "tiny", "--train_files": text,
                "--tokenizer": tok_dir, "--output_dir": str(tmp_path / "out"), "--max_steps": "2",
                "--max_seq_length": "32", "--global_batch_size": "4", "--mini_layers": "2"}
        args.update(over)
        return [x for k, v in args.items() if v is not None for x in ([k, v] if v != "" else [k])]
    return make


def _write(path, content):
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return str(path)


def _assert_one_line_error(capsys, *needles):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    for needle in needles:
        assert needle in err[0], (needle, err[0])


def test_bad_inputs_each_give_one_line_and_no_output(tmp_path, run_args, capsys, monkeypatch):
    out = tmp_path / "out"
    bad_json = _write(tmp_path / "bad.json", '{"zero_optimization": {"stage": 3}')
    disagree = dict(load_ds_json(ZERO3_CPU), train_micro_batch_size_per_gpu=3)
    disagree_path = _write(tmp_path / "disagree.json", json.dumps(disagree))
    cases = [
        (dict(**{"--train_files": str(tmp_path / "nope.txt")}), ["nope.txt", "not found"]),
        (dict(**{"--train_files": _write(tmp_path / "empty.txt", "\n \n")}), ["empty.txt", "empty"]),
        (dict(**{"--train_files": _write(tmp_path / "l1.txt", b"abc \xe9\n")}), ["l1.txt", "not UTF-8"]),
        (dict(**{"--model": "xlmr-base"}), ["tokens but the model's vocabulary is 250002", "fix:"]),
        (dict(**{"--mini_layers": "4"}), ["--mini_layers 4 is outside 1..3"]),
        (dict(**{"--deepspeed_config": bad_json}), ["bad.json", "invalid JSON at line 1"]),
        (dict(**{"--deepspeed_config": disagree_path, "--micro_batch_size": "2"}),
         ["train_micro_batch_size_per_gpu is 3 but --micro_batch_size gives 2", "\"auto\""]),
        (dict(**{"--global_batch_size": "5"}), ["--global_batch_size 5 is not divisible by the world size 2"]),
        (dict(**{"--max_seq_length": "600"}), ["--max_seq_length 600 needs 602 positions"]),
        (dict(**{"--resume": ""}), ["--resume", "no complete checkpoint"]),
        (dict(**{"--sinusoidal_positions": "-0.1"}), ["--sinusoidal_positions -0.1", "fix:"]),
        (dict(**{"--profile_step": "3"}), ["--profile_step 3: not a step of this run (1..2)"]),
    ]
    monkeypatch.setenv("WORLD_SIZE", "2")  # as the deepspeed launcher would set it; rank 0 prints
    for over, needles in cases:
        assert main(run_args(**over)) == 2, over
        _assert_one_line_error(capsys, *needles)
        assert not out.exists(), f"output written for {over}"


def test_output_dir_holding_a_run_needs_resume(tmp_path, run_args, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "run_config.json").write_text("{}")
    assert main(run_args()) == 2
    _assert_one_line_error(capsys, "already holds a run", "--resume")
    assert os.listdir(out) == ["run_config.json"]


def test_auto_values_come_from_the_typed_config():
    train = TrainConfig(global_batch_size=32, micro_batch_size=4, lr=3e-4, max_steps=500, warmup_steps=50,
                        grad_clip=0.5)
    ds, train = resolve_ds_config(ZERO3_CPU, train, world_size=2)
    assert (ds["train_batch_size"], ds["train_micro_batch_size_per_gpu"], ds["gradient_accumulation_steps"]) \
        == (32, 4, 4)
    assert ds["optimizer"]["params"]["lr"] == 3e-4 and ds["optimizer"]["params"]["adam_w_mode"] is True
    assert ds["scheduler"]["params"]["total_num_steps"] == 500
    assert ds["scheduler"]["params"]["warmup_num_steps"] == 50
    assert ds["gradient_clipping"] == 0.5
    ds, train = resolve_ds_config(ZERO3_CPU, TrainConfig(global_batch_size=32), world_size=4)
    assert train.micro_batch_size == 8 and ds["gradient_accumulation_steps"] == 1
    with pytest.raises(ConfigError, match="not a multiple of micro batch 3"):
        resolve_ds_config(ZERO3_CPU, TrainConfig(global_batch_size=32, micro_batch_size=3), world_size=2)


def test_every_shipped_ds_config_resolves():
    names = sorted(n for n in os.listdir(os.path.join(REPO, "ds_configs")) if n.endswith(".json"))
    assert {"zero3.json", "zero3_cpu.json", "zero3_cpu_bf16.json", "zero2.json", "zero3_offload.json"} <= set(names)
    for name in names:
        ds, _ = resolve_ds_config(os.path.join(REPO, "ds_configs", name), TrainConfig(), world_size=1)
        assert "auto" not in json.dumps(ds), name


@pytest.mark.parametrize("flags, needle", [
    (["--eval_marks", "1"], "need 2 <= eval_marks"), (["--full_steps", "2", "--eval_marks", "4"], "--eval_marks 4"),
    (["--finetune_pooling", "max"], "--finetune_pooling: invalid choice: 'max'"), (["--premise_negated", "2"], "--premise_negated 2"),
    (["--mini_layers", "4"], "--mini_layers 4")])
def test_demo_refuses_bad_flags_before_any_work(tmp_path, capsys, flags, needle):
    from mmadapt.demo import main as demo_main

    out = tmp_path / "demo"
    out.mkdir()
    (out / "keep.txt").write_text("an earlier run")
    assert demo_main(["--output", str(out), *flags]) == 2
    _assert_one_line_error(capsys, needle, "fix:")
    assert (out / "keep.txt").read_text() == "an earlier run"  # the earlier output is untouched


def test_scale_benchmark_refuses_a_foreign_work_dir_and_a_missing_source(tmp_path, capsys):
    import importlib.util

    spec = importlib.util.spec_from_file_location("scale", os.path.join(REPO, "benchmarks", "scale.py"))
    scale = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(scale)
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "step2-xlmr-large-mini").mkdir()  # a name scale.py would replace: never deleted
    (foreign / "step2-xlmr-large-mini" / "keep.txt").write_text("a user's file")
    common = ["--output", str(tmp_path / "out"), "--cases", "step2-xlmr-large-mini"]
    assert scale.main(common + ["--work", str(foreign)]) == 2
    _assert_one_line_error(capsys, f"--work {foreign}", "not made by this command")
    assert (foreign / "step2-xlmr-large-mini" / "keep.txt").read_text() == "a user's file"
    assert scale.main(common + ["--work", str(tmp_path / "w"), "--source", str(tmp_path / "nope")]) == 2
    _assert_one_line_error(capsys, "--source", "no such directory")
    assert scale.main(common + ["--work", str(tmp_path / "w"), "--malloc_mmap_threshold", "lots"]) == 2
    _assert_one_line_error(capsys, "--malloc_mmap_threshold", "MMADAPT_MALLOC_MMAP_THRESHOLD='lots'")
    assert not (tmp_path / "w").exists() and not (tmp_path / "out").exists()
