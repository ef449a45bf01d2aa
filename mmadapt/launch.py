"""Running a stage's launcher as a child job (for `mmadapt pipeline` and `mmadapt demo`)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_launcher(script: str, args: list, nproc: int, log_path: str) -> float:
    """``deepspeed --num_gpus nproc launchers/<script> args``; returns seconds taken.

    The launchers' stdout goes to ``log_path``; stderr (rank 0's progress bars and errors) to ours.
    Raises RuntimeError with the log's tail when the stage fails.
    """
    cmd = [os.path.join(os.path.dirname(sys.executable), "deepspeed"), "--num_gpus", str(nproc),
           "--master_port", str(free_port()), os.path.join(REPO, "launchers", script)] + [str(a) for a in args]
    os.makedirs(os.path.dirname(log_path), exist_ok=True)
    t0 = time.perf_counter()
    with open(log_path, "w") as log:
        proc = subprocess.run(cmd, stdout=log, stderr=None, cwd=REPO,
                              env={**os.environ, "PYTHONWARNINGS": "ignore"})
    if proc.returncode != 0:
        with open(log_path) as fh:
            tail = fh.read()[-2000:]
        raise RuntimeError(f"{script} failed (exit {proc.returncode}); log {log_path}:\n{tail}")
    return time.perf_counter() - t0


def run_stage(run_dir: str, name: str, script: str, args: list, nproc: int, reuse: bool = True):
    """A stage writing ``run_dir/name``: kept if complete and ``reuse``, else run from scratch (its log in
    ``run_dir/logs/name.log``). Returns the seconds it took, None when kept."""
    import shutil

    out = os.path.join(run_dir, name)
    if reuse and complete(out):
        print(f"\n== {name}: complete, reused", flush=True)
        return None
    shutil.rmtree(out, ignore_errors=True)
    print(f"\n== {name}", flush=True)
    return run_launcher(script, args, nproc, os.path.join(run_dir, "logs", f"{name}.log"))


def complete(stage_dir: str) -> bool:
    """A stage is complete once it wrote summary.json, its last file."""
    return os.path.isfile(os.path.join(stage_dir, "summary.json"))
