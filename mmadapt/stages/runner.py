"""One run path for every training stage; each stage is a small ``Stage`` of what differs.

In the manner of torchtitan's ``TrainSpec``: the skeleton below (check everything, claim the output
directory, join the process group, data, build the model under ``zero.Init``, load, freeze, engine,
Trainer, outputs) is written once, and pretraining, MiniPost, step 2 and fine-tuning fill in its hooks.
Everything that can be wrong with the input is found in ``prepare``, before the process group starts or
any file is written; a problem is one line on stderr and exit status 2 (``stage_main``).
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from typing import Callable, Optional

import torch

from ..artifacts import CHECKPOINTS, RUN_CONFIG, write_run_config
from ..config import build_parser, parse_sections, to_dict
from ..errors import ConfigError


def rank_from_env() -> int:
    return int(os.environ.get("RANK", os.environ.get("OMPI_COMM_WORLD_RANK", 0)))


def world_from_env() -> int:
    return int(os.environ.get("WORLD_SIZE", os.environ.get("OMPI_COMM_WORLD_SIZE", 1)))


@dataclass
class Finish:
    """What a stage leaves behind, returned by ``Stage.finish`` on every rank.

    The runner owns the rest of the stage's life: it has already proved the frozen weights unchanged;
    it adds ``fields`` to the summary, calls ``save`` on rank 0 (the stage's own files), then writes
    ``summary.json`` last (its presence marks the stage complete) and prints ``done: <done>``."""

    fields: dict = field(default_factory=dict)
    save: Optional[Callable[[], None]] = None
    done: str = ""


class Stage:
    """A training stage: its flags and the hooks the runner calls, in this order.

    ``prepare`` validates and resolves (sets ``self.train``, ``self.ds``, ``self.tokenizer``); ``load_data``
    runs on every rank after the process group exists; ``build`` / ``load`` / ``trainable`` make the
    model; ``batches``, ``step_flops`` and ``tokens_per_step`` feed the Trainer; ``evaluation`` may give it
    an evaluation; ``finish`` says what the stage leaves behind (a ``Finish``). The runner proves that
    every weight ``trainable`` refused is bit for bit as ``load`` left it, counts parameters, and writes
    ``summary.json`` last.
    """

    name = "stage"
    sections: dict = {}
    must_match: tuple = ("model", "data")  # config sections a --resume must repeat
    hidden_flags: tuple = ("export_hf", "forget_every")  # fields of shared sections this stage does not read

    def __init__(self, sections: dict):
        self.s = sections
        self.train = sections["train"]
        self.ds: dict = {}
        self.tokenizer = None

    # hooks ---------------------------------------------------------------------------------------
    def prepare(self) -> None:
        raise NotImplementedError

    def load_data(self, rank: int, world: int) -> None:
        raise NotImplementedError

    def describe_data(self) -> Optional[str]:
        return None

    def build(self) -> torch.nn.Module:
        raise NotImplementedError

    def load(self, model: torch.nn.Module) -> None:
        pass

    def trainable(self, name: str) -> bool:
        return True

    def batches(self, rank: int) -> Callable[[int, int], tuple]:
        raise NotImplementedError

    def step_flops(self):
        raise NotImplementedError

    def tokens_per_step(self) -> int:
        raise NotImplementedError

    def evaluation(self, engine, resumed: dict, rank: int):
        """(evaluate(step) -> figures, steps between evaluations, checkpoint state fn) or None."""
        return None

    def after_step(self, engine):
        """A callable run after every optimizer step (step number), or None."""
        return None

    def finish(self, engine, trainer, summary: dict, rank: int, world: int) -> Finish:
        """Collectives (gathers) run on every rank here; file writes go in ``Finish.save`` (rank 0)."""
        raise NotImplementedError

    # shared pieces -------------------------------------------------------------------------------
    def resolve_ds(self) -> None:
        from ..ds_config import resolve_ds_config

        self.ds, self.train = resolve_ds_config(self.train.deepspeed_config, self.train, world_from_env())
        self.s["train"] = self.train

    def resolved(self) -> dict:
        return to_dict(self.s)


def run(stage: Stage) -> dict:
    """The skeleton every training stage shares, and the stage's whole life: nothing of a stage's output
    is written before its frozen weights are proved unchanged, and summary.json comes last."""
    from .. import engine as eng
    from ..artifacts import write_summary
    from ..packs import module_checksum
    from ..trainer import Trainer

    stage.prepare()
    train = stage.train
    check_output_dir(train.output_dir, train.resume, stage.resolved(), stage.must_match)

    rank, world = eng.init_distributed()
    malloc_threshold = eng.configure_malloc()  # before the model and the data
    stage.load_data(rank, world)
    if rank == 0:
        write_run_config(train.output_dir, stage.resolved(), stage.tokenizer)
        if stage.describe_data():
            print(stage.describe_data(), flush=True)
    eng.barrier()

    torch.manual_seed(train.seed)
    before_model = eng.per_rank(eng.resident_memory_bytes())  # the runtime, tokenizer and data
    model = eng.build_under_zero(stage.build, stage.ds)
    stage.load(model)
    # Frozen flags are set before deepspeed.initialize, which then sees only the trainable parameters.
    frozen = []
    for name, p in model.named_parameters():
        p.requires_grad = stage.trainable(name)
        if not p.requires_grad:
            frozen.append(name)
    # Hashed from the module as loaded (in its own dtype), so that a bf16 engine compares like with like.
    frozen_before = module_checksum(model, frozen) if frozen else None
    counts = parameter_counts(model, world)
    engine, start, resumed = eng.initialize_or_resume(model, stage.ds, train.output_dir, train.resume)

    evaluate, eval_every, checkpoint_state = stage.evaluation(engine, resumed, rank) or (None, 0, None)
    # Loading (whole fp32 tensors on their way into partitions) peaks apart from training: measured here,
    # and the high-water mark starts again, so that the Trainer's peak is training's own.
    setup_peak = eng.peak_memory_per_rank()
    training_peak_apart = eng.reset_peak_memory()
    trainer = Trainer(engine, train, stage.batches(rank), stage.tokens_per_step(), stage.step_flops(),
                      train.output_dir, rank, world, start_step=start, evaluate=evaluate, eval_every=eval_every,
                      on_checkpoint=checkpoint_state, after_step=stage.after_step(engine))
    summary = trainer.run()

    if frozen:  # the proof that the stage trained only what it says it trains
        frozen_after = module_checksum(engine.module, frozen)
        if frozen_after != frozen_before:
            raise RuntimeError(f"{stage.name} changed frozen weights (checksum {frozen_before} -> {frozen_after}); "
                               "nothing was saved")
        summary.update(frozen_tensors=len(frozen), frozen_checksum_before=frozen_before,
                       frozen_checksum_after=frozen_after)
    summary.update(counts, optimizer=eng.optimizer_name(engine), malloc_mmap_threshold=malloc_threshold)
    finish = stage.finish(engine, trainer, summary, rank, world)
    summary.update(finish.fields)
    # Memory per rank: before the model, through loading, training alone (what benchmarks/scale.py holds
    # against the ZeRO-3 prediction; the whole run's where the high-water mark cannot be reset), and the
    # whole stage, its closing gathers and checksums included.
    summary.update(resident_before_model_bytes_per_rank=before_model, setup_peak_memory_bytes_per_rank=setup_peak,
                   training_peak_memory_bytes_per_rank=summary["peak_memory_bytes_per_rank"],
                   training_peak_is_apart=training_peak_apart)
    summary["peak_memory_bytes_per_rank"] = [max(a, b) for a, b in zip(setup_peak, eng.peak_memory_per_rank())]
    if rank == 0:
        if finish.save is not None:
            finish.save()
        write_summary(train.output_dir, summary)
        print(f"done: {stage.name}, step {summary['steps']}, loss {summary['final_loss']:.4f}"
              + (f"; {finish.done}" if finish.done else ""), flush=True)
    eng.barrier()
    return summary


def parameter_counts(model: torch.nn.Module, world: int) -> dict:
    """The model the engine holds: all its elements (tied once), each rank's share, the trainable ones."""
    import torch.distributed as dist

    from .. import engine as eng

    local, full = eng.local_parameter_count(model)
    per_rank = [local]
    if dist.is_initialized() and world > 1:
        per_rank = [None] * world
        dist.all_gather_object(per_rank, local)
    seen, trainable = set(), 0
    for p in model.parameters():
        if p.requires_grad and id(p) not in seen:
            seen.add(id(p))
            trainable += getattr(p, "ds_numel", p.numel())
    return {"parameters": full, "parameters_per_rank": per_rank, "trainable_parameters": trainable}


def check_train_inputs(data_cfg, train) -> None:
    """An MLM stage's text, tokenizer and step counts."""
    from ..data import check_text_file

    if not train.output_dir:
        raise ConfigError("--output_dir is missing; fix: pass --output_dir DIR")
    if not data_cfg.train_files and not data_cfg.dataset_name:
        raise ConfigError("no training text; fix: pass --train_files FILE [FILE ...] or --dataset_name")
    if not data_cfg.tokenizer:
        raise ConfigError("--tokenizer is missing; fix: pass a directory from `mmadapt tokenizer train`")
    for path in data_cfg.train_files:
        check_text_file(path, data_cfg.text_field)
    check_steps(train)


def check_steps(train) -> None:
    if train.max_steps < 1 or train.log_every < 1:
        raise ConfigError(f"--max_steps {train.max_steps} / --log_every {train.log_every} must be >= 1; "
                          "fix: give positive values")
    if not 0 <= train.profile_step <= train.max_steps:
        raise ConfigError(f"--profile_step {train.profile_step}: not a step of this run (1..{train.max_steps}); "
                          "fix: give one of them, or 0 for none")
    if train.forget_every < 0:
        raise ConfigError(f"--forget_every {train.forget_every}: must be >= 0; fix: give 0 (off) or a step count")


def check_output_dir(output_dir: str, resume: bool, run_config: dict,
                     must_match=("model", "data")) -> None:
    """Refuse to mix runs: an existing run needs --resume, and a resumed run must be the same run."""
    from ..engine import latest_tag

    saved_path = os.path.join(output_dir, RUN_CONFIG)
    if not resume:
        if os.path.isdir(output_dir) and os.listdir(output_dir):
            what = "a run" if os.path.isfile(saved_path) else "other files"
            raise ConfigError(f"--output_dir {output_dir} already holds {what}; fix: pass --resume to "
                              "continue it or choose a new --output_dir")
        return
    if not os.path.isfile(saved_path) or latest_tag(os.path.join(output_dir, CHECKPOINTS)) is None:
        raise ConfigError(f"--resume: {output_dir} has no complete checkpoint; fix: drop --resume to "
                          "start a new run there, or point --output_dir at the run to continue")
    with open(saved_path, encoding="utf-8") as fh:
        saved = json.load(fh)
    for section in must_match:
        for key, value in run_config[section].items():
            if key in ("train_files", "cache_dir", "eval_files"):
                continue
            if saved.get(section, {}).get(key) != value:
                raise ConfigError(f"--resume: {output_dir} was run with {key}={saved[section].get(key)!r}, "
                                  f"now {value!r}; fix: use the same value or a new --output_dir")


def stage_main(prog: str, doc: str, sections: dict, job: Callable[[dict], object], argv=None,
               hidden: tuple = ()) -> int:
    """Parse, run ``job(sections)``, and turn a ConfigError into one line on stderr and exit status 2.

    A training stage passes ``lambda s: run(StageClass(s))`` and its ``hidden_flags``."""
    from ..engine import close_distributed

    try:
        parser = build_parser(prog, doc.split("\n\n")[0], sections, hidden=hidden)
        job(parse_sections(parser, argv, sections))
        return 0
    except ConfigError as exc:
        if rank_from_env() == 0:
            print(f"error: {exc}", file=sys.stderr, flush=True)
        return 2
    finally:
        close_distributed()
