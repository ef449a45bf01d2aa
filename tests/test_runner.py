"""The runner owns a stage's life: the frozen-weight proof, parameter counts, summary.json last; and the
registry behind every launcher."""

import json
import os
import subprocess
import sys

import pytest

from conftest import REPO

PROBE = os.path.join(REPO, "tests", "tamper_probe.py")
ZERO3 = os.path.join(REPO, "ds_configs", "zero3_cpu.json")


def test_every_launcher_is_a_registered_stage_and_an_unknown_name_is_one_line(capsys):
    from mmadapt.stages import STAGES, main

    launchers = {os.path.splitext(f)[0] for f in os.listdir(os.path.join(REPO, "mmadapt", "launchers"))
                 if f.endswith(".py") and f != "__init__.py"}
    assert launchers == set(STAGES)
    for name in launchers:
        source = open(os.path.join(REPO, "mmadapt", "launchers", name + ".py")).read()
        assert f'main("{name}")' in source, name  # each launcher is the registry's entry, nothing more
    assert main("pretrain", ["--help"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: no stage 'pretrain'; fix: use one of minijoint, minipost, adapt, finetune, evaluate"]
    proc = subprocess.run([sys.executable, "-m", "mmadapt.stages", "minipost", "--help"], capture_output=True,
                          text=True, cwd=REPO)
    assert proc.returncode == 0 and "--extract_layers" in proc.stdout


def _probe(mode: str, out, text_and_tokenizer):
    from mmadapt.launch import free_port

    text, tok, _ = text_and_tokenizer
    cmd = [sys.executable, "-m", "deepspeed.launcher.runner", "--num_gpus", "2", "--master_port", str(free_port()),
           PROBE, "--deepspeed_config", ZERO3, "--model", "tiny", "--hidden_size", "32", "--num_layers", "2",
           "--num_heads", "2", "--intermediate_size", "64", "--mini_layers", "1", "--train_files", text,
           "--tokenizer", tok, "--max_seq_length", "32", "--global_batch_size", "4", "--max_steps", "4",
           "--log_every", "1", "--save_every", "100", "--output_dir", str(out)]
    env = {**os.environ, "TAMPER": "1" if mode == "tamper" else "0"}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=REPO, env=env)


@pytest.mark.slow
def test_a_stage_that_changes_a_frozen_weight_fails_and_leaves_no_output(tmp_path, text_and_tokenizer):
    keep = _probe("keep", tmp_path / "keep", text_and_tokenizer)
    assert keep.returncode == 0, keep.stdout[-3000:] + keep.stderr[-3000:]
    summary = json.load(open(tmp_path / "keep" / "summary.json"))
    assert summary["frozen_tensors"] == 1  # the token embeddings (tied to the heads' projections)
    assert summary["frozen_checksum_before"] == summary["frozen_checksum_after"]
    # counts of the model the engine holds: 2 ranks, partitioned, the embeddings not trainable
    vocab = len(text_and_tokenizer[2])
    assert len(summary["parameters_per_rank"]) == 2 and sum(summary["parameters_per_rank"]) >= summary["parameters"]
    assert max(summary["parameters_per_rank"]) < summary["parameters"]
    assert summary["parameters"] - summary["trainable_parameters"] == vocab * 32
    assert os.path.isdir(tmp_path / "keep" / "hf")
    assert "done: minijoint, step 4" in keep.stdout

    bad = _probe("tamper", tmp_path / "bad", text_and_tokenizer)
    assert bad.returncode != 0
    assert "minijoint changed frozen weights" in bad.stdout + bad.stderr
    assert not (tmp_path / "bad" / "summary.json").exists() and not (tmp_path / "bad" / "hf").exists()
