"""A rank that dies ends the job promptly, and the last complete checkpoint resumes the run."""

import glob
import json
import os
import select
import signal
import subprocess
import sys
import time

import pytest

from conftest import REPO
from test_launcher_zero3 import DEEPSPEED, LAUNCHER, _free_port, metrics

pytestmark = pytest.mark.slow
STALL_PROBE = os.path.join(REPO, "tests", "stall_probe.py")


def test_killed_rank_ends_the_job_and_the_last_checkpoint_resumes(tmp_path, text_and_tokenizer):
    text, tok_dir, _ = text_and_tokenizer
    out = tmp_path / "run"
    args = ["--deepspeed_config", "ds_configs/zero3_cpu.json", "--model", "tiny", "--mini_layers", "2",
            "--train_files", text, "--tokenizer", tok_dir, "--max_seq_length", "32", "--global_batch_size", "8",
            "--max_steps", "400", "--log_every", "1", "--save_every", "5", "--cache_dir", str(tmp_path / "cache"),
            "--output_dir", str(out)]
    # Rank 1 stops after step 12 (past the step-10 checkpoint; rank 0 has logged step 11 and waits in step
    # 12's collective) and says so through a FIFO: the test waits on that event, then kills it.
    fifo = str(tmp_path / "stalled")
    os.mkfifo(fifo)
    env = {**os.environ, "STALL_RANK": "1", "STALL_STEP": "12", "STALL_FIFO": fifo}
    port = _free_port()
    launcher = subprocess.Popen([DEEPSPEED, "--num_gpus", "2", "--master_port", str(port), STALL_PROBE, *args],
                                cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # opened now, so the writer never blocks on open
        message, log, deadline = b"", b"", time.monotonic() + 600
        try:
            while not message:  # wakes on the FIFO or on the job's stderr (drained; its end = the job ended)
                ready, _, _ = select.select([reader, launcher.stderr], [], [], max(0.0, deadline - time.monotonic()))
                assert ready, "rank 1 did not reach step 12 within 600 s"
                if reader in ready:
                    message = os.read(reader, 64)
                if launcher.stderr in ready:
                    chunk = os.read(launcher.stderr.fileno(), 1 << 16)
                    log += chunk
                    assert chunk, f"the job ended before rank 1 stalled: {log[-3000:].decode(errors='replace')}"
        finally:
            os.close(reader)
        killed_at = time.time()
        os.kill(int(message.decode()), signal.SIGKILL)
        rc = launcher.wait(timeout=120)
        assert rc != 0 and time.time() - killed_at < 120
    finally:
        if launcher.poll() is None:
            launcher.kill()
        # a SIGKILLed rank cannot remove its DeepSpeed shm buffer (66 MB of RAM): do it for it
        for buffer in glob.glob(f"/dev/shm/deepspeed_allreduce_buffer_*_{port}_*"):
            os.remove(buffer)

    ckpt = out / "checkpoints"
    tag = (ckpt / "latest").read_text()
    step = int(tag.removeprefix("step"))
    assert step == 10 and (ckpt / tag).is_dir()
    assert metrics(out)[-1]["step"] == 11  # the killed run logged past its checkpoint

    resumed = subprocess.run([DEEPSPEED, "--num_gpus", "2", "--master_port", str(_free_port()), LAUNCHER, *args,
                              "--resume", "--stop_at_step", str(step + 3)], cwd=REPO, capture_output=True,
                             text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resumed from {tag} at step {step}" in resumed.stdout
    # the curve continues from the checkpoint, each step once
    assert [r["step"] for r in metrics(out)] == list(range(1, step + 4))
    summary = json.load(open(out / "summary.json"))
    assert summary["steps"] == step + 3 and summary["steps_this_run"] == 3


def test_resume_on_another_world_size_continues_the_same_run(tmp_path, text_and_tokenizer):
    """2 ranks -> checkpoint -> 1 rank, and 1 -> 2 (universal checkpoints): the same losses as one
    uninterrupted rank (one rank runs as a plain process, two through the launcher).

    The global batch, data order and masking do not depend on the world size; dropout is off because its
    streams do. Reductions over 2 ranks vs 1 differ in rounding only.
    """
    text, tok_dir, _ = text_and_tokenizer
    args = ["--deepspeed_config", "ds_configs/zero3_cpu.json", "--model", "tiny", "--mini_layers", "2",
            "--train_files", text, "--tokenizer", tok_dir, "--max_seq_length", "32", "--global_batch_size", "8",
            "--max_steps", "12", "--log_every", "1", "--lr", "2e-3", "--hidden_dropout", "0",
            "--attention_dropout", "0", "--cache_dir", str(tmp_path / "cache"), "--no_export_hf"]

    def launch(nproc, out, *extra):
        # one rank runs as a plain process (a launch costs 16-20 s, nearly all of it starting processes; the
        # launcher at one rank is the pipeline test's), two through the `deepspeed` launcher
        head = [DEEPSPEED, "--num_gpus", str(nproc), "--master_port", str(_free_port())] if nproc > 1 else [sys.executable]
        proc = subprocess.run([*head, LAUNCHER, *args, "--output_dir", str(out), *extra], cwd=REPO,
                              capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
        return proc

    launch(1, tmp_path / "single")
    single = metrics(tmp_path / "single")
    for before, after in ((2, 1), (1, 2)):
        out = tmp_path / f"moved-{before}-{after}"
        launch(before, out, "--stop_at_step", "6")
        resumed = launch(after, out, "--resume")
        assert f"universal checkpoint for {after} ranks" in resumed.stdout
        assert "resumed from step6_universal at step 6" in resumed.stdout
        moved = metrics(out)
        assert [r["step"] for r in moved] == [r["step"] for r in single] == list(range(1, 13))
        for a, b in zip(moved, single):
            for key in ("loss", "mini_loss", "lr"):
                assert a[key] == pytest.approx(b[key], rel=2e-4), (before, after, a["step"], key)


def test_exit_process_keeps_buffered_output_and_the_status():
    """Launchers leave through os._exit (no interpreter teardown); what they printed must still arrive."""
    code = ("import sys; from mmadapt.engine import exit_process; print('to stdout', end=''); "
            "sys.stderr.write('to stderr'); exit_process(3)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert (proc.returncode, proc.stdout, proc.stderr) == (3, "to stdout", "to stderr")
