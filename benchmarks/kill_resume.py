"""Kill a rank mid-run, resume, and show the loss curve continuing where it stopped.

    .venv/bin/python benchmarks/kill_resume.py --output benchmarks/results

A 2-rank MiniJoint run on the built-in text checkpoints every --save_every steps; rank 1 is killed
(SIGKILL) after --kill_after steps; the job must end on its own; `--resume` continues from the last
complete checkpoint; an uninterrupted run of the same config is the reference. Writes
kill_resume.md / .json / .png.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time

import psutil

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from mmadapt.artifacts import RunDir  # noqa: E402
from mmadapt.engine import latest_tag  # noqa: E402
from mmadapt.launch import free_port  # noqa: E402


def read_metrics(out: str) -> list:
    run = RunDir(out)
    return run.read_metrics() if os.path.isfile(run.metrics) else []


def launcher_cmd(args_list: list, nproc: int = 2) -> list:
    return [os.path.join(os.path.dirname(sys.executable), "deepspeed"), "--num_gpus", str(nproc),
            "--master_port", str(free_port()), os.path.join(REPO, "launchers", "minijoint.py"), *args_list]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--output", default=os.path.join(REPO, "benchmarks", "results"))
    p.add_argument("--work", default="/tmp/mmadapt-kill-resume")
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--save_every", type=int, default=10)
    p.add_argument("--kill_after", type=int, default=25)
    args = p.parse_args(argv)

    from mmadapt.textgen import write_corpus
    from mmadapt.tokenizer import train_tokenizer

    from mmadapt.outdir import claim_run_dir, remove_own_entries

    claim_run_dir(args.work, ".mmadapt-kill-resume", "--work")  # a foreign directory is refused, not wiped
    remove_own_entries(args.work, ("text.txt", "tok", "cache", "killed", "reference"))
    text = os.path.join(args.work, "text.txt")
    write_corpus(text, 5000)
    train_tokenizer([text], 200, os.path.join(args.work, "tok"))
    common = ["--deepspeed_config", "ds_configs/zero3_cpu.json", "--model", "tiny", "--mini_layers", "2",
              "--train_files", text, "--tokenizer", os.path.join(args.work, "tok"), "--max_seq_length", "64",
              "--global_batch_size", "16", "--max_steps", str(args.steps), "--log_every", "1",
              "--save_every", str(args.save_every), "--lr", "2e-3", "--no_export_hf",
              "--cache_dir", os.path.join(args.work, "cache")]
    run = os.path.join(args.work, "killed")
    job = subprocess.Popen(launcher_cmd(common + ["--output_dir", run]), cwd=REPO, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    while len(read_metrics(run)) < args.kill_after:
        if job.poll() is not None:
            raise RuntimeError("the run ended before the kill")
        time.sleep(0.2)
    victim = next(c for c in psutil.Process(job.pid).children(recursive=True)
                  if "--local_rank=1" in " ".join(c.cmdline()))
    killed_at_step = read_metrics(run)[-1]["step"]
    t0 = time.time()
    os.kill(victim.pid, signal.SIGKILL)
    exit_code = job.wait(timeout=300)
    ended_after = time.time() - t0
    before = read_metrics(run)
    tag = latest_tag(RunDir(run).checkpoints)
    subprocess.run(launcher_cmd(common + ["--output_dir", run, "--resume"]), cwd=REPO, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    resumed = read_metrics(run)
    reference_dir = os.path.join(args.work, "reference")
    subprocess.run(launcher_cmd(common + ["--output_dir", reference_dir]), cwd=REPO, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    reference = read_metrics(reference_dir)
    worst = max(abs(a["loss"] - b["loss"]) / b["loss"] for a, b in zip(resumed, reference))

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot([r["step"] for r in reference], [r["loss"] for r in reference], label="uninterrupted", lw=3, alpha=0.4)
    ax.plot([r["step"] for r in before], [r["loss"] for r in before], "o", ms=3, label="killed run (logged)")
    ax.plot([r["step"] for r in resumed], [r["loss"] for r in resumed], "-", label="after --resume")
    ax.axvline(killed_at_step, color="red", ls="--", label=f"rank 1 killed (step {killed_at_step})")
    ax.set_xlabel("step")
    ax.set_ylabel("primary MLM loss")
    ax.legend()
    fig.tight_layout()
    fig.savefig(os.path.join(args.output, "kill_resume.png"), dpi=110)

    result = {"killed_at_step": killed_at_step, "exit_code": exit_code, "job_ended_after_s": ended_after,
              "resumed_from": tag, "steps_logged_before_kill": len(before), "steps_after_resume": len(resumed),
              "max_relative_loss_difference_vs_uninterrupted": worst}
    with open(os.path.join(args.output, "kill_resume.json"), "w") as fh:
        json.dump(result, fh, indent=2)
    text = (f"Rank 1 of 2 killed (SIGKILL) at step {killed_at_step}: the job exited with code {exit_code} "
            f"{ended_after:.1f} s later. `--resume` continued from {tag}; metrics.jsonl then holds steps 1.."
            f"{resumed[-1]['step']} once each, and every logged loss is within {worst:.1e} (relative) of an "
            "uninterrupted run's. Plot: `results/kill_resume.png`.\n")
    with open(os.path.join(args.output, "kill_resume.md"), "w") as fh:
        fh.write(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
