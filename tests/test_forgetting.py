"""Active forgetting (--forget_every): the token embeddings are drawn afresh and their Adam moments reset,
on every rank, under ZeRO-3 and without ZeRO, and nothing else changes; pretraining does it on schedule."""

import json
import os
import subprocess
import sys

import pytest

from conftest import REPO

pytestmark = pytest.mark.slow
PROBE = os.path.join(REPO, "tests", "forget_probe.py")


@pytest.mark.parametrize("ds, ranks", [("zero3_cpu.json", 2), ("dp_cpu.json", 1)])
def test_a_forget_event_resets_the_embeddings_and_their_moments_only(tmp_path, ds, ranks):
    from mmadapt.launch import free_port

    cmd = ([sys.executable, "-m", "deepspeed.launcher.runner", "--num_gpus", str(ranks), "--master_port",
            str(free_port()), PROBE] if ranks > 1 else [sys.executable, PROBE])
    proc = subprocess.run(cmd + [os.path.join(REPO, "ds_configs", ds), str(tmp_path)], capture_output=True,
                          text=True, timeout=600, cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for rank in range(ranks):
        report = json.load(open(tmp_path / f"rank{rank}.json"))
        assert all(report.values()), (rank, report)


def test_pretraining_forgets_on_schedule_but_not_at_the_end(tmp_path, text_and_tokenizer):
    text, tok, _ = text_and_tokenizer
    args = ["--deepspeed_config", os.path.join(REPO, "ds_configs", "dp_cpu.json"), "--model", "tiny",
            "--hidden_size", 32, "--num_layers", 2, "--num_heads", 2, "--intermediate_size", 64, "--mini_layers", 1,
            "--train_files", text, "--tokenizer", tok, "--max_seq_length", 32, "--global_batch_size", 8,
            "--max_steps", 6, "--forget_every", 2, "--log_every", 1, "--output_dir", tmp_path / "run",
            "--cache_dir", tmp_path / "cache"]
    proc = subprocess.run([sys.executable, os.path.join(REPO, "launchers", "minijoint.py"), *map(str, args)],
                          capture_output=True, text=True, timeout=600, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.load(open(tmp_path / "run" / "summary.json"))
    assert summary["forget_steps"] == [2, 4]  # not at step 6, the last
    losses = {r["step"]: r["loss"] for r in map(json.loads, open(tmp_path / "run" / "metrics.jsonl"))}
    assert losses[3] > losses[2]  # the step after a forget event predicts with fresh embeddings
