"""Step 2: learn a target language's token embeddings with everything else frozen.

    deepspeed --num_gpus 2 launchers/adapt.py --deepspeed_config ds_configs/zero3_cpu.json \
        --model runs/mj/hf --through mini --tokenizer tok-de/ --train_files de.txt \
        --eval_files de.test.txt --output_dir packs/de-mini

``--through mini`` trains through the mini-model only (MiniJoint's embeddings + layers 1..k + mini head,
or a MiniPost mini-model given with ``--mini_model``); the engine never holds layers above it.
``--through full`` is the standard approach: the whole primary body, frozen. Trainable: the new
embedding matrix (tied to the head's output projection) and, unless ``--no_train_head_bias``, the
head bias over the new vocabulary. Every ``--eval_every`` steps the *primary* model, with the current
embeddings plugged in, is evaluated on held-out target text; ``eval.jsonl`` pairs each figure with the
cumulative step-2 FLOPs. The output directory is a language pack (see mmadapt/packs.py).
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from typing import Optional

import torch

from ..config import DataConfig, ModelConfig, TrainConfig, _f, to_dict
from ..errors import ConfigError
from .common import (check_output_dir, check_train_inputs, stage_main, world_from_env, write_run_config,
                     write_summary)

MINIPOST_META = "minipost.json"


@dataclass
class AdaptConfig:
    model: Optional[str] = _f(None, "primary model: a Hugging Face directory (an mmadapt export or XLM-R)")
    through: str = _f("mini", "mini: through the mini-model; full: through the whole primary body",
                      choices=("mini", "full"))
    mini_model: Optional[str] = _f(None, "MiniPost mini-model directory (default: the model's MiniJoint head)")
    init: str = _f("normal", "new embeddings: normal N(0, 0.02); overlap: rows of tokens whose string is in "
                   "the source vocabulary start from the source row", choices=("normal", "overlap"))
    source_tokenizer: Optional[str] = _f(None, "source tokenizer for --init overlap (default: --model's)")
    train_head_bias: bool = _f(True, "train the head bias over the new vocabulary (zeros at start; "
                               "--no_train_head_bias keeps it at zero)")
    eval_files: list = _f([], "held-out target text for the primary model's MLM loss", nargs="+")
    eval_every: int = _f(50, "steps between evaluations of the primary model")
    eval_blocks: int = _f(64, "held-out blocks per evaluation")
    parallel_file: Optional[str] = _f(None, "source<TAB>target pairs: retrieval top-1 at each evaluation")
    parallel_dev_file: Optional[str] = _f(None, "dev pairs: dev_retrieval_top1, which --select_by reads "
                                          "instead of the test pairs' figure")
    parallel_limit: int = _f(1000, "pairs used for retrieval")
    task_models: list = _f([], "fine-tuned source task models (launchers/finetune.py): zero-shot score at "
                           "each evaluation, mean over them", nargs="+")
    task_eval_file: Optional[str] = _f(None, "target-language task file (test) for --task_models")
    task_dev_file: Optional[str] = _f(None, "target-language dev task file: dev_zero_shot_accuracy, which "
                                      "--select_by reads instead of the test figure")
    select_by: str = _f("eval_loss", "figure that picks the pack's best embeddings (its dev_ figure when a "
                        "dev file is given: the test files then only report)",
                        choices=("eval_loss", "retrieval_top1", "zero_shot_accuracy", "zero_shot_f1"))
    activation_checkpointing: bool = _f(False, "recompute each layer in backward")


SECTIONS = {"adapt": AdaptConfig, "data": DataConfig, "train": TrainConfig}


@dataclass
class Step2Model:
    """What the step-2 engine trains, and where it came from."""

    primary_cfg: ModelConfig
    primary_sd: dict
    step_cfg: ModelConfig  # the step-2 model's config: target vocabulary
    depth: int
    state_dict: dict  # MiniModel names; word embeddings and head bias still to be made
    head_bias_source: torch.Tensor
    kind: str  # "full", "minijoint" or "minipost"


def load_step2_source(cfg: AdaptConfig, target_vocab: int) -> Step2Model:
    from ..hf_io import load_pretrained_state_dict, pretrained_model_config
    from ..packs import checksum, shared_bottom_names

    if not cfg.model:
        raise ConfigError("--model is missing; fix: pass the primary model's Hugging Face directory")
    primary_cfg = pretrained_model_config(cfg.model)
    primary_sd = load_pretrained_state_dict(cfg.model)
    body = {k: v for k, v in primary_sd.items() if k.startswith("roberta.embeddings.")}

    if cfg.through == "full":
        kind, depth, head_prefix, source = "full", primary_cfg.num_layers, "lm_head.", primary_sd
    elif cfg.mini_model:
        kind, source, depth = "minipost", *_load_minipost(cfg.mini_model)
        meta = _minipost_meta(cfg.mini_model)
        shared = checksum(primary_sd, shared_bottom_names(primary_sd, meta["extract_layers"]))
        if shared != meta["shared_checksum"]:
            raise ConfigError(f"--mini_model {cfg.mini_model} was extracted from another model (shared-weight "
                              f"checksum {meta['shared_checksum']}, --model has {shared}); fix: pass the "
                              "--model it was built from")
        head_prefix = "head."
    else:
        if not primary_cfg.mini_head or not any(k.startswith("mini_head.") for k in primary_sd):
            raise ConfigError(f"--through mini: {cfg.model} has no mini-model (no MiniJoint head); fix: pass "
                              "--mini_model from launchers/minipost.py, or use --through full")
        kind, depth, head_prefix, source = "minijoint", primary_cfg.mini_layers, "mini_head.", primary_sd

    sd = dict(body) if kind != "minipost" else {}
    for name, tensor in source.items():
        if kind == "minipost":
            sd[name] = tensor
        elif name.startswith("roberta.encoder.layer."):
            if int(name.split(".")[3]) < depth:
                sd[name] = tensor
        elif name.startswith(head_prefix):
            sd["head." + name[len(head_prefix):]] = tensor
    head_bias = sd.pop("head.bias")
    sd.pop("roberta.embeddings.word_embeddings.weight", None)
    sd.pop("head.decoder_weight", None)
    step_cfg = dataclasses.replace(primary_cfg, vocab_size=target_vocab, mini_head=False, mini_layers=None,
                                   activation_checkpointing=cfg.activation_checkpointing)
    return Step2Model(primary_cfg, primary_sd, step_cfg, depth, sd, head_bias, kind)


def _minipost_meta(path: str) -> dict:
    meta_path = os.path.join(path, MINIPOST_META)
    if not os.path.isfile(meta_path):
        raise ConfigError(f"--mini_model {path}: no {MINIPOST_META}; fix: point at a launchers/minipost.py "
                          "--output_dir")
    with open(meta_path, encoding="utf-8") as fh:
        return json.load(fh)


def _load_minipost(path: str) -> tuple[dict, int]:
    from safetensors.torch import load_file

    meta = _minipost_meta(path)
    return load_file(os.path.join(path, "mini_model.safetensors")), meta["extract_layers"] + meta["new_layers"]


def initial_embeddings(src: Step2Model, target_tok, init: str, source_tok, seed: int):
    """(embeddings, head bias, rows copied) for the new vocabulary."""
    g = torch.Generator().manual_seed(seed)
    v, h = src.step_cfg.vocab_size, src.step_cfg.hidden_size
    emb = torch.randn(v, h, generator=g) * src.step_cfg.initializer_range
    bias = torch.zeros(v)
    copied = 0
    if init == "overlap":
        source_emb = src.primary_sd["roberta.embeddings.word_embeddings.weight"]
        source_vocab = source_tok.get_vocab()
        for piece, tid in target_tok.get_vocab().items():
            sid = source_vocab.get(piece)
            if sid is not None and sid < source_emb.shape[0]:
                emb[tid] = source_emb[sid]
                bias[tid] = src.head_bias_source[sid]
                copied += 1
    emb[src.step_cfg.pad_token_id] = 0.0
    return emb, bias, copied


def freeze_all_but_language(model: torch.nn.Module, train_head_bias: bool) -> list:
    """Frozen flags set before deepspeed.initialize; returns the trainable parameter names."""
    trainable = {"roberta.embeddings.word_embeddings.weight"} | ({"head.bias"} if train_head_bias else set())
    for name, p in model.named_parameters():
        p.requires_grad = name in trainable
    return sorted(trainable)


class PrimaryEvaluator:
    """The primary model with the current embeddings plugged in: target MLM loss on held-out blocks, and
    retrieval on parallel pairs.

    A collective: built and called on every rank. Under ZeRO-3 the evaluation model is partitioned like
    the training engine (a DeepSpeed engine without optimizer) so no rank holds the whole primary model,
    which --through mini never loads otherwise; under other stages each rank holds a copy on its device.
    Ranks share the held-out batches, the sentences to pool and the task examples. The masking of the
    held-out blocks is fixed, so every evaluation sees the same positions. Zero-shot scoring
    (--task_models) uses plain copies of the fine-tuned models on every rank's device.
    """

    def __init__(self, cfg: AdaptConfig, src: Step2Model, target_tok, eval_blocks, masker, ds_config: dict):
        import torch.distributed as dist

        from .. import engine as eng
        from ..evaluators import Retrieval, ZeroShot
        from ..packs import LANGUAGE_SPECIFIC
        from ..tokenizer import load_tokenizer

        self.rank, self.world = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
        self.zero3 = eng.zero_stage(ds_config) == 3
        self.device = eng.device()
        self.zero_shot = None
        self.retrieval = {}  # figure prefix -> Retrieval
        pair_files = {p: f for p, f in (("", cfg.parallel_file), ("dev_", cfg.parallel_dev_file)) if f}
        if pair_files:
            # The source side is pooled once, by the primary model with its own embeddings.
            source = self._build(src.primary_cfg, {k: v for k, v in src.primary_sd.items()
                                                   if not k.startswith("mini_head.")}, ds_config)
            source_tok = load_tokenizer(cfg.source_tokenizer or cfg.model)
            self.retrieval = {p: Retrieval(source, source_tok, target_tok, f, cfg.parallel_limit, distributed=True)
                              for p, f in pair_files.items()}
            del source
        self.model = self._build(dataclasses.replace(src.primary_cfg, vocab_size=src.step_cfg.vocab_size),
                                 {k: v for k, v in src.primary_sd.items()
                                  if k not in LANGUAGE_SPECIFIC and not k.startswith("mini_head.")}, ds_config,
                                 strict_prefixes=("roberta.encoder.",))
        if cfg.task_models:
            task_files = {p: f for p, f in (("", cfg.task_eval_file), ("dev_", cfg.task_dev_file)) if f}
            self.zero_shot = ZeroShot(cfg.task_models, task_files, target_tok, self.device, distributed=True)
        self.batches = []
        if eval_blocks is not None:
            g = torch.Generator().manual_seed(1234)
            for start in range(0, len(eval_blocks), 16):
                ids = eval_blocks[start:start + 16]["input_ids"]
                self.batches.append(masker(ids, g))

    def _build(self, model_cfg: ModelConfig, state_dict: dict, ds_config: dict,
               strict_prefixes: tuple = ("roberta.", "lm_head.")) -> torch.nn.Module:
        from .. import engine as eng
        from ..hf_io import load_into
        from ..model import MiniJointForMaskedLM

        cfg = dataclasses.replace(model_cfg, mini_head=False, mini_layers=None, hidden_dropout=0.0,
                                  attention_dropout=0.0, activation_checkpointing=False)
        model = eng.build_under_zero(lambda: MiniJointForMaskedLM(cfg), ds_config)
        load_into(model, state_dict, strict_prefixes)
        for p in model.parameters():
            p.requires_grad = False
        return eng.inference_module(model, ds_config).eval()

    def _plug_in(self, embeddings: torch.Tensor, head_bias: torch.Tensor) -> None:
        import deepspeed

        params = [self.model.roberta.embeddings.word_embeddings.weight, self.model.lm_head.bias]
        with deepspeed.zero.GatheredParameters(params, modifier_rank=0, enabled=self.zero3), torch.no_grad():
            for p, new in zip(params, (embeddings, head_bias)):
                p.copy_(new.to(p.device, p.dtype))

    @torch.no_grad()
    def _eval_loss(self) -> float:
        import torch.distributed as dist

        # Every rank runs the same number of forwards (ZeRO-3 gathers are collective): a rank out of
        # batches repeats the first one with weight 0.
        rounds = -(-len(self.batches) // self.world)
        sums = torch.zeros(2, dtype=torch.float64)
        for i in range(rounds):
            j = i * self.world + self.rank
            inputs, labels = self.batches[j] if j < len(self.batches) else self.batches[0]
            k = int(labels.ne(-100).sum()) if j < len(self.batches) else 0
            loss = self.model(inputs.to(self.device), labels.to(self.device)).mlm_loss
            sums += torch.tensor([loss.item() * k, k], dtype=torch.float64)
        if self.world > 1:
            sums = sums.to(self.device)
            dist.all_reduce(sums)
        return (sums[0] / sums[1].clamp(min=1)).item()

    def __call__(self, embeddings: torch.Tensor, head_bias: torch.Tensor) -> dict:
        """The same figures on every rank."""
        self._plug_in(embeddings, head_bias)
        out = {}
        if self.batches:
            out["eval_loss"] = self._eval_loss()
        for prefix, retrieval in self.retrieval.items():
            out.update({prefix + k: v for k, v in retrieval(self.model).items()})
        if self.zero_shot is not None:
            out.update(self.zero_shot(embeddings))
        return out


def gathered_language_params(engine) -> tuple[torch.Tensor, torch.Tensor]:
    """Full copies of the trained embeddings and head bias on every rank (ZeRO-3 gathers them)."""
    import deepspeed

    module = engine.module
    params = [module.roberta.embeddings.word_embeddings.weight, module.head.bias]
    zero3 = any(hasattr(p, "ds_id") for p in params)
    if zero3:
        with deepspeed.zero.GatheredParameters(params):
            return tuple(p.detach().float().cpu().clone() for p in params)
    return tuple(p.detach().float().cpu().clone() for p in params)


def check_adapt_inputs(cfg: AdaptConfig, data_cfg) -> None:
    from ..data import check_text_file

    for path in cfg.eval_files:
        check_text_file(path, data_cfg.text_field)
    if cfg.eval_every < 1:
        raise ConfigError(f"--eval_every {cfg.eval_every} must be >= 1; fix: give a positive value")
    if cfg.parallel_dev_file and not cfg.parallel_file:
        raise ConfigError("--parallel_dev_file needs --parallel_file (the test pairs); fix: add it")
    for path in filter(None, (cfg.parallel_file, cfg.parallel_dev_file)):
        from ..evaluators import read_parallel

        check_text_file(path, None)
        read_parallel(path, cfg.parallel_limit)  # its format, before anything is written
    if cfg.task_models and not cfg.task_eval_file:
        raise ConfigError("--task_models needs --task_eval_file (target-language task file); fix: add it")
    if cfg.task_dev_file and not cfg.task_models:
        raise ConfigError("--task_dev_file needs --task_models to score; fix: add them or drop it")
    if cfg.task_models:
        from .finetune import FINETUNE_META

        for path in filter(None, (cfg.task_eval_file, cfg.task_dev_file)):
            check_text_file(path, None)
        for path in cfg.task_models:
            if not os.path.isfile(os.path.join(path, FINETUNE_META)):
                raise ConfigError(f"--task_models {path}: no {FINETUNE_META}; fix: point at a launchers/"
                                  "finetune.py --output_dir")
    wanted = {"eval_loss": cfg.eval_files, "retrieval_top1": cfg.parallel_file,
              "zero_shot_accuracy": cfg.task_models, "zero_shot_f1": cfg.task_models}[cfg.select_by]
    if not wanted and cfg.select_by != "eval_loss":  # eval_loss is the default: no evaluation, no choice
        raise ConfigError(f"--select_by {cfg.select_by} has nothing to measure it; fix: pass the matching "
                          "--eval_files / --parallel_file / --task_models")


def run(sections: dict) -> dict:
    from .. import engine as eng
    from ..data import BatchPlan, build_blocks
    from ..ds_config import resolve_ds_config
    from ..flops import step_flops
    from ..hf_io import load_into
    from ..masking import Masker
    from ..model import MiniModel
    from ..packs import BEST_EMBEDDINGS_FILE, body_checksum, checksum, module_checksum, save_pack
    from ..tokenizer import load_tokenizer
    from ..trainer import Trainer, mlm_batches

    cfg, data_cfg, train = sections["adapt"], sections["data"], sections["train"]
    check_train_inputs(data_cfg, train)
    check_adapt_inputs(cfg, data_cfg)
    select_by = cfg.select_by
    target_tok = load_tokenizer(data_cfg.tokenizer)
    src = load_step2_source(cfg, len(target_tok))
    if data_cfg.max_seq_length + 2 > src.step_cfg.max_position_embeddings:
        raise ConfigError(f"--max_seq_length {data_cfg.max_seq_length} needs {data_cfg.max_seq_length + 2} "
                          f"positions, the model has {src.step_cfg.max_position_embeddings}; fix: lower it")
    source_tok = None
    if cfg.init == "overlap":
        source_tok = load_tokenizer(cfg.source_tokenizer or cfg.model)
    ds, train = resolve_ds_config(train.deepspeed_config, train, world_from_env())
    resolved = to_dict({"adapt": cfg, "data": data_cfg, "train": train})
    check_output_dir(train.output_dir, train.resume, resolved, must_match=("adapt",))

    rank, world = eng.init_distributed()
    blocks = build_blocks(target_tok, data_cfg.max_seq_length, data_cfg.train_files, data_cfg.dataset_name,
                          data_cfg.dataset_config, data_cfg.text_field, data_cfg.cache_dir,
                          is_main=rank == 0, barrier=eng.barrier)
    eval_blocks = None
    if cfg.eval_files:
        eval_blocks = build_blocks(target_tok, data_cfg.max_seq_length, cfg.eval_files,
                                   text_field=data_cfg.text_field, cache_dir=data_cfg.cache_dir,
                                   is_main=rank == 0, barrier=eng.barrier)
        eval_blocks = eval_blocks.select(range(min(cfg.eval_blocks, len(eval_blocks))))
    plan = BatchPlan(len(blocks), train.global_batch_size, train.micro_batch_size, world, train.seed)
    emb, bias, copied = initial_embeddings(src, target_tok, cfg.init, source_tok, train.seed)
    if rank == 0:
        write_run_config(train.output_dir, resolved, target_tok)
        print(f"step 2 through {src.kind} ({src.depth} of {src.primary_cfg.num_layers} layers); "
              f"{len(target_tok)} target tokens, {copied} rows copied from the source", flush=True)
    eng.barrier()

    model = eng.build_under_zero(lambda: MiniModel(src.step_cfg, depth=src.depth), ds)
    init_sd = {**src.state_dict, "roberta.embeddings.word_embeddings.weight": emb, "head.bias": bias}
    load_into(model, init_sd)
    freeze_all_but_language(model, cfg.train_head_bias)
    frozen = sorted(n for n, p in model.named_parameters() if not p.requires_grad)
    frozen_before = checksum(init_sd, frozen)
    engine, start, resumed = eng.initialize_or_resume(model, ds, train.output_dir, train.resume)

    masker = Masker(target_tok, data_cfg.mlm_probability)
    evaluator = None
    if cfg.eval_files or cfg.parallel_file or cfg.task_models:
        evaluator = PrimaryEvaluator(cfg, src, target_tok, eval_blocks, masker, ds)
    meta = {"source_model": os.path.abspath(cfg.model), "source_checksum": body_checksum(src.primary_sd),
            "through": cfg.through, "mini_kind": src.kind, "depth": src.depth, "init": cfg.init,
            "rows_copied": copied, "vocab_size": len(target_tok), "hidden_size": src.step_cfg.hidden_size,
            "select_by": select_by}
    # The best score so far travels in every checkpoint: a resumed run must not take its first
    # evaluation for the best (mmadapt pipeline resumes interrupted stages on its own).
    best = {"value": resumed.get("best_value"), "step": resumed.get("best_step")}
    higher_is_better = select_by != "eval_loss"

    def evaluate(step: int) -> dict:
        emb_now, bias_now = gathered_language_params(engine)
        figures = evaluator(emb_now, bias_now)  # the same on every rank, so is `best`
        value = figures.get("dev_" + select_by, figures.get(select_by))  # dev when there is one
        if value is not None and (best["value"] is None or
                                  (value > best["value"] if higher_is_better else value < best["value"])):
            best.update(value=value, step=step)
            if rank == 0:
                save_pack(train.output_dir, emb_now, bias_now, os.path.join(train.output_dir, "tokenizer"),
                          {**meta, "best_step": step, select_by: value}, filename=BEST_EMBEDDINGS_FILE)
        eng.barrier()
        return figures if rank == 0 else {}

    predicted = train.global_batch_size * data_cfg.max_seq_length * data_cfg.mlm_probability
    flops = step_flops(src.step_cfg, data_cfg.max_seq_length, train.global_batch_size, predicted, src.depth,
                       [src.depth], set(), True, False, cfg.activation_checkpointing)
    trainer = Trainer(engine, train, mlm_batches(blocks, plan, masker, train.seed, rank),
                      train.global_batch_size * data_cfg.max_seq_length, flops, train.output_dir, rank, world,
                      start_step=start, evaluate=evaluate if evaluator is not None else None,
                      eval_every=cfg.eval_every,
                      on_checkpoint=lambda step: {"best_value": best["value"], "best_step": best["step"]})
    summary = trainer.run()
    emb_final, bias_final = gathered_language_params(engine)
    # Proof that step 2 touched only the language: every frozen weight hashes as it was loaded.
    frozen_after = module_checksum(engine.module, frozen)
    local, full = eng.local_parameter_count(engine.module)
    summary.update(meta, best_step=best["step"], best_value=best["value"], frozen_parameters=len(frozen),
                   engine_parameters=full, engine_parameters_this_rank=local,
                   frozen_checksum_before=frozen_before, frozen_checksum_after=frozen_after)
    if evaluator is not None:
        local, full = eng.local_parameter_count(evaluator.model)
        summary.update(eval_parameters=full, eval_parameters_this_rank=local)
    if frozen_after != frozen_before:
        raise RuntimeError(f"step 2 changed frozen weights ({frozen_before} -> {frozen_after})")
    if rank == 0:
        save_pack(train.output_dir, emb_final, bias_final, os.path.join(train.output_dir, "tokenizer"),
                  {**meta, "steps": summary["steps"], "flops": summary["flops"],
                   "best_step": best["step"], "best_" + select_by: best["value"]})
        write_summary(train.output_dir, summary)
        last = trainer.eval_history[-1] if trainer.eval_history else {}
        print(f"done: step {summary['steps']}, train loss {summary['final_loss']:.4f}, "
              f"{summary['flops']:.3g} step-2 FLOPs" + (f", primary eval loss {last['eval_loss']:.4f}"
                                                         if "eval_loss" in last else ""), flush=True)
    eng.barrier()
    return summary


def main(argv=None) -> int:
    return stage_main("adapt", __doc__, SECTIONS, run, argv)


if __name__ == "__main__":
    from ..engine import exit_process

    exit_process(main())
