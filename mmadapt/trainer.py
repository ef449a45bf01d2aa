"""The training loop: deterministic batches, DeepSpeed steps, metrics, checkpoints, run summary.

Losses are summed on the device and synchronised only on logging steps. Rank 0 draws the progress bar
and writes ``metrics.jsonl`` (one line per logged step) and ``summary.json``.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

import torch
import torch.distributed as dist

from . import engine as eng
from .artifacts import RunDir
from .config import TrainConfig
from .data import BatchPlan, row_generator
from .flops import StepFlops
from .masking import Masker
from .model import IGNORE_INDEX



@dataclass
class Trainer:
    engine: object
    train: TrainConfig
    make_batch: Callable[[int, int], tuple]  # (step, micro-batch) -> model inputs, labels last
    tokens_per_step: int  # over all ranks
    step_flops: StepFlops  # analytic FLOPs of one optimizer step (all ranks together)
    output_dir: str
    rank: int
    world_size: int
    on_checkpoint: Optional[Callable[[int], dict]] = None  # extra client state
    start_step: int = 0
    # Called on every rank at step 0, every `eval_every` steps and at the end; returns the figures to
    # log (rank 0) with the step's cumulative FLOPs in eval.jsonl. Its time is not training time.
    evaluate: Optional[Callable[[int], dict]] = None
    eval_every: int = 0
    # Called on every rank after optimizer step `step` (1-based), before logging, evaluation and saving.
    after_step: Optional[Callable[[int], None]] = None
    history: list = field(default_factory=list)
    eval_history: list = field(default_factory=list)
    eval_seconds: float = 0.0
    has_mini_loss: bool = False
    # Where a step's time goes (seconds summed over this run's steps, this rank): building the batch (with
    # the step's target count reduced over ranks), forward, backward, and DeepSpeed's step (gradient
    # reduction and the optimizer). Exact on CPU; on an accelerator these are host times unless
    # MMADAPT_SYNC_PHASES=1 synchronises the device at each boundary.
    phase_seconds: dict = field(default_factory=lambda: dict.fromkeys(("batch", "forward", "backward", "step"), 0.0))
    _train_start: float = 0.0

    @property
    def checkpoint_dir(self) -> str:
        return RunDir(self.output_dir).checkpoints

    @property
    def accumulation(self) -> int:
        return self.engine.gradient_accumulation_steps()

    def train_step(self, step: int) -> torch.Tensor:
        """One optimizer step; returns [loss x targets, mini loss x targets, targets] summed over its
        micro-batches (divide by the targets of all ranks for the step's token mean).

        The objective is the mean over every target of the global batch, whatever the split into ranks
        and micro-batches (fairseq's normalisation): each micro-batch's summed loss is divided by the
        step's global target count, so a run resumed on another world size optimises the same thing.
        DeepSpeed averages gradients over ranks and divides the loss by the accumulation steps; the
        factor world x accumulation undoes both.
        """
        clock = _PhaseClock(self.phase_seconds, self.engine.device)
        batches = [[t.to(self.engine.device) for t in self.make_batch(step, m)] for m in range(self.accumulation)]
        counts = torch.stack([b[-1].ne(IGNORE_INDEX).sum() for b in batches]).float()
        total = counts.sum().clone()
        dist.all_reduce(total)
        scale = self.world_size * self.accumulation / total.clamp(min=1)
        sums = torch.zeros(3, device=self.engine.device)
        clock.lap("batch")
        for micro, (batch, n) in enumerate(zip(batches, counts)):
            # Dropout draws from a stream fixed by the position, so resume repeats the run exactly.
            torch.manual_seed(self.train.seed * 7919 + (step * self.accumulation + micro) * 257 + self.rank)
            out = self.engine(*batch)
            clock.lap("forward")
            self.engine.backward(out.loss * n * scale)
            clock.lap("backward")
            self.engine.step()
            clock.lap("step")
            self.has_mini_loss = out.mini_loss is not None
            mini = out.mini_loss if out.mini_loss is not None else torch.zeros((), device=sums.device)
            sums += torch.stack([out.mlm_loss.detach().float() * n, mini.detach().float() * n, n])
        return sums

    def _write_metrics(self, record: dict) -> None:
        if self.rank == 0:
            with open(RunDir(self.output_dir).metrics, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(record) + "\n")

    def run_eval(self, step: int) -> None:
        t0 = time.perf_counter()
        # training seconds of this run so far (evaluations excluded): the wall-clock beside the FLOPs
        trained = t0 - self._train_start - self.eval_seconds
        self.engine.eval()
        with torch.no_grad():
            figures = self.evaluate(step)
        self.engine.train()
        if self.rank == 0:
            record = {"step": step, "flops": step * self.step_flops.total, **figures,
                      "train_seconds": trained, "eval_seconds": time.perf_counter() - t0}
            self.eval_history.append(record)
            with open(RunDir(self.output_dir).eval_log, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(record) + "\n")
        self.eval_seconds += time.perf_counter() - t0

    def save(self, step: int) -> None:
        state = {"step": step, **(self.on_checkpoint(step) if self.on_checkpoint else {})}
        eng.save_checkpoint(self.engine, self.checkpoint_dir, step, state)

    def drop_records_after(self, step: int) -> None:
        """On resume, forget what a killed run logged past its last checkpoint: the curve continues
        from the checkpoint, with each step once."""
        if self.rank != 0:
            return
        run = RunDir(self.output_dir)
        for path in (run.metrics, run.eval_log):
            if os.path.isfile(path):
                with open(path, encoding="utf-8") as fh:
                    keep = [line for line in fh if line.strip() and json.loads(line)["step"] <= step]
                with open(path + ".tmp", "w", encoding="utf-8") as fh:
                    fh.writelines(keep)
                os.replace(path + ".tmp", path)

    def run(self) -> dict:
        from tqdm.auto import tqdm

        if self.start_step:
            self.drop_records_after(self.start_step)

        t = self.train
        stop = min(t.max_steps, t.stop_at_step or t.max_steps)
        tokens_per_step = self.tokens_per_step
        window = torch.zeros(3, device=self.engine.device)
        window_steps, window_start = 0, time.perf_counter()
        window_phases = dict(self.phase_seconds)
        start_time = self._train_start = time.perf_counter()
        bar = tqdm(total=stop, initial=self.start_step, desc="train", disable=self.rank != 0,
                   dynamic_ncols=True)
        step = self.start_step
        if self.evaluate is not None and self.start_step == 0:
            self.run_eval(0)
        for step in range(self.start_step + 1, stop + 1):
            if step == t.profile_step:
                from .profiling import profiled

                window += profiled(lambda: self.train_step(step - 1), self.output_dir, self.rank, str(step))
            else:
                window += self.train_step(step - 1)
            if self.after_step is not None:
                self.after_step(step)
            window_steps += 1
            bar.update(1)
            if step % t.log_every == 0 or step == stop:
                dist.all_reduce(window)  # target-weighted sums over ranks: mean = sum / targets
                n = window[2].item()
                elapsed = time.perf_counter() - window_start
                record = {
                    "step": step,
                    "loss": window[0].item() / n,
                    "mini_loss": window[1].item() / n if self.has_mini_loss else None,
                    "lr": self.engine.get_lr()[0],
                    "tokens": step * tokens_per_step,
                    "tokens_per_s": window_steps * tokens_per_step / max(elapsed, 1e-9),
                    "flops": step * self.step_flops.total,
                    "targets": int(window[2].item()),  # masked tokens (MLM) or examples (tasks)
                    # this rank's seconds per phase over the logged steps (see phase_seconds)
                    "phase_seconds": {k: v - window_phases[k] for k, v in self.phase_seconds.items()},
                }
                window_phases = dict(self.phase_seconds)
                self.history.append(record)
                self._write_metrics(record)
                bar.set_postfix(loss=f"{record['loss']:.3f}")
                window.zero_()
                window_steps, window_start = 0, time.perf_counter()
            if self.evaluate is not None and ((self.eval_every and step % self.eval_every == 0) or step == stop):
                eval_start = time.perf_counter()
                self.run_eval(step)
                window_start += time.perf_counter() - eval_start
            if t.save_every and step % t.save_every == 0 and step != stop:
                self.save(step)
        bar.close()
        wall = time.perf_counter() - start_time - self.eval_seconds
        self.save(step)
        return self.summary(step, wall, tokens_per_step)

    def summary(self, step: int, wall: float, tokens_per_step: int) -> dict:
        done = step - self.start_step
        out = {
            "steps": step,
            "steps_this_run": done,
            "tokens": step * tokens_per_step,
            "flops": step * self.step_flops.total,
            "flops_per_step": self.step_flops.as_dict(),
            "wall_clock_s": wall,
            "eval_seconds": self.eval_seconds,
            "phase_seconds": dict(self.phase_seconds),
            "tokens_per_s": done * tokens_per_step / max(wall, 1e-9),
            "achieved_flops_per_s": done * self.step_flops.total / max(wall, 1e-9),
            "peak_memory_bytes_per_rank": eng.peak_memory_per_rank(),
            "world_size": self.world_size,
            "final_loss": self.history[-1]["loss"] if self.history else None,
            "final_mini_loss": self.history[-1]["mini_loss"] if self.history else None,
        }
        return out


class _PhaseClock:
    """Laps of one optimizer step into ``phases`` (see Trainer.phase_seconds)."""

    def __init__(self, phases: dict, device):
        self.phases, self.t = phases, time.perf_counter()
        self.sync = None
        if torch.device(device).type != "cpu" and os.environ.get("MMADAPT_SYNC_PHASES") == "1":
            from deepspeed.accelerator import get_accelerator
            self.sync = get_accelerator().synchronize

    def lap(self, phase: str) -> None:
        if self.sync is not None:
            self.sync()
        now = time.perf_counter()
        self.phases[phase] += now - self.t
        self.t = now


def mlm_batches(blocks, plan: BatchPlan, masker: Masker, seed: int, rank: int) -> Callable[[int, int], tuple]:
    """(step, micro) -> (masked input ids, labels) for this rank: a pure function of its arguments."""

    def make(step: int, micro: int) -> tuple:
        ids = blocks[plan.indices(step, micro, rank)]["input_ids"]
        first = plan.first_row(micro, rank)
        return masker.rows(ids, [row_generator(seed, step, first + j) for j in range(len(ids))])
    return make

