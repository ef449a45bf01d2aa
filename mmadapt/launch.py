"""Running a stage's launcher as a child job (for `mmadapt pipeline`, `mmadapt demo` and the benchmarks).

Stages start as ``python -m deepspeed.launcher.runner --module mmadapt.launchers.<stage>``: the same
interpreter, and the launcher found as a module, so this works from a checkout and from an installed
package alike (no ``launchers/`` directory or ``deepspeed`` script needed on disk).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launcher_command(script: str, args: list, nproc: int) -> list:
    """``deepspeed --num_gpus nproc`` for launchers/<script> (minijoint.py, adapt.py, ...)."""
    module = "mmadapt.launchers." + os.path.splitext(os.path.basename(script))[0]
    return [sys.executable, "-m", "deepspeed.launcher.runner", "--num_gpus", str(nproc), "--master_port",
            str(free_port()), "--module", module] + [str(a) for a in args]


def run_launcher(script: str, args: list, nproc: int, log_path: str, append: bool = False) -> float:
    """Run one stage; returns seconds taken.

    The launchers' stdout goes to ``log_path`` (after the earlier segments' with ``append``: a resumed
    stage keeps its whole log); stderr (rank 0's progress bars and errors) to ours.
    Raises RuntimeError with the log's tail when the stage fails.
    """
    os.makedirs(os.path.dirname(log_path), exist_ok=True)
    t0 = time.perf_counter()
    with open(log_path, "a" if append else "w") as log:
        proc = subprocess.run(launcher_command(script, args, nproc), stdout=log, stderr=None,
                              env={**os.environ, "PYTHONWARNINGS": "ignore"})
    if proc.returncode != 0:
        with open(log_path) as fh:
            tail = fh.read()[-2000:]
        raise RuntimeError(f"{script} failed (exit {proc.returncode}); log {log_path}:\n{tail}")
    return time.perf_counter() - t0


def run_stage(run_dir: str, name: str, script: str, args: list, nproc: int, reuse: bool = True):
    """A stage writing ``run_dir/name`` (a directory the caller claimed), the one skip/resume policy of the
    demo, the pipeline and the benchmarks: with ``reuse``, a complete stage (summary.json) is kept and an
    interrupted one with a checkpoint continues from it (``--resume``: the stage itself refuses a resume
    whose model or data flags changed); anything else runs from scratch. Its log goes to
    ``run_dir/logs/name.log``. Returns the stage's launch seconds, summed over the segments of a resumed
    stage (recorded in ``logs/stage_seconds.json``), None when kept."""
    from .artifacts import CHECKPOINTS, complete, record_stage_seconds, stage_log
    from .engine import latest_tag

    out = os.path.join(run_dir, name)
    if reuse and complete(out):
        print(f"\n== {name}: complete, reused", flush=True)
        return None
    resumed = reuse and latest_tag(os.path.join(out, CHECKPOINTS)) is not None
    if resumed:
        print(f"\n== {name}: resumed from its last checkpoint", flush=True)
        args = list(args) + ["--resume"]
    else:
        shutil.rmtree(out, ignore_errors=True)
        print(f"\n== {name}", flush=True)
    seconds = run_launcher(script, args, nproc, stage_log(run_dir, name), append=resumed)
    return record_stage_seconds(run_dir, name, seconds, resumed)
