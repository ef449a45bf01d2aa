"""Step 2: learn a target language's token embeddings with everything else frozen.

    deepspeed --num_gpus 2 launchers/adapt.py --deepspeed_config ds_configs/zero3_cpu.json \
        --model runs/mj/hf --through mini --tokenizer tok-de/ --train_files de.txt \
        --eval_files de.test.txt --output_dir packs/de-mini

``--through mini`` trains through the mini-model only (MiniJoint's embeddings + layers 1..k + mini head,
or a MiniPost mini-model given with ``--mini_model``); the engine never holds layers above it.
``--through full`` is the standard approach: the whole primary body, frozen. Trainable: the new
embedding matrix (tied to the head's output projection) and, unless ``--no_train_head_bias``, the
head bias over the new vocabulary. Every ``--eval_every`` steps the *primary* model, with the current
embeddings plugged in, is evaluated (mmadapt/evaluators.py); ``eval.jsonl`` pairs each figure with the
cumulative step-2 FLOPs. The output directory is a language pack (see mmadapt/artifacts.py).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Optional

import torch

from ..config import DataConfig, ModelConfig, TrainConfig, _f
from ..errors import ConfigError
from ..flops import fused_attention_runs
from .pretrain import MLMStage
from .runner import Finish, check_train_inputs

TRAINABLE = ("roberta.embeddings.word_embeddings.weight", "head.bias")
INITS = ("normal", "overlap", "focus")


@dataclass
class AdaptConfig:
    model: Optional[str] = _f(None, "primary model: a Hugging Face directory (an mmadapt export or XLM-R; or a "
                              "pretraining run directory: its hf/)")
    through: str = _f("mini", "mini: through the mini-model; full: through the whole primary body",
                      choices=("mini", "full"))
    mini_model: Optional[str] = _f(None, "MiniPost mini-model directory (none: the model's MiniJoint head)")
    init: str = _f("normal", "new embeddings: normal N(0, 0.02); overlap: rows of tokens whose string is in "
                   "the source vocabulary start from the source row; focus: overlap, and every other token a "
                   "sparse mix of the overlapping rows by fastText similarity on --train_files (FOCUS)",
                   choices=INITS)
    focus_min_count: int = _f(10, "--init focus: a token seen fewer times in --train_files gets no fastText "
                              "vector and starts as --init normal")
    source_tokenizer: Optional[str] = _f(None, "source tokenizer for --init overlap/focus and retrieval "
                                         "(none: --model's)")
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
    task_dev_file: Optional[str] = _f(None, "target-language dev task file: dev_zero_shot_accuracy (and the "
                                      "task's other figures), which --select_by reads instead of the test figure")
    select_by: str = _f("eval_loss", "figure that picks the pack's best embeddings (its dev_ figure when a "
                        "dev file is given: the test files then only report); zero_shot_accuracy: pair and "
                        "classify tasks, zero_shot_macro_f1: classify, zero_shot_f1: mlqa",
                        choices=("eval_loss", "retrieval_top1", "zero_shot_accuracy", "zero_shot_macro_f1",
                                 "zero_shot_f1"))
    activation_checkpointing: bool = _f(False, "recompute each layer in backward")


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
    from ..artifacts import load_minipost
    from ..hf_io import load_pretrained_state_dict, pretrained_model_config, select_keys
    from ..packs import checksum, shared_bottom_names

    if not cfg.model:
        raise ConfigError("--model is missing; fix: pass the primary model's Hugging Face directory")
    primary_cfg = pretrained_model_config(cfg.model)
    # Read by need: the step-2 model takes the embeddings, its layers and its head; the rest of the primary
    # model is read later only into the (partitioned) evaluation model, tensor by tensor.
    primary_sd = load_pretrained_state_dict(cfg.model)

    if cfg.through == "full":
        kind, depth, head_prefix = "full", primary_cfg.num_layers, "lm_head."
    elif cfg.mini_model:
        minipost, meta = load_minipost(cfg.mini_model)
        kind, depth, head_prefix = "minipost", meta["extract_layers"] + meta["new_layers"], "head."
        shared = checksum(primary_sd, shared_bottom_names(primary_sd, meta["extract_layers"]))
        if shared != meta["shared_checksum"]:
            raise ConfigError(f"--mini_model {cfg.mini_model} was extracted from another model (shared-weight "
                              f"checksum {meta['shared_checksum']}, --model has {shared}); fix: pass the "
                              "--model it was built from")
    else:
        if not primary_cfg.mini_head or not any(k.startswith("mini_head.") for k in primary_sd):
            raise ConfigError(f"--through mini: {cfg.model} has no mini-model (no MiniJoint head); fix: pass "
                              "--mini_model from launchers/minipost.py, or use --through full")
        kind, depth, head_prefix = "minijoint", primary_cfg.mini_layers, "mini_head."

    if kind == "minipost":
        sd = dict(minipost)
    else:
        def wanted(name: str) -> bool:  # the source's token rows and their tied copies are replaced: not read
            if name.startswith("roberta.encoder.layer."):
                return int(name.split(".")[3]) < depth
            return name.startswith(("roberta.embeddings.", head_prefix)) and not name.endswith(
                ("word_embeddings.weight", "decoder_weight"))

        sd = {}
        for name, tensor in select_keys(primary_sd, wanted).items():
            sd["head." + name[len(head_prefix):] if name.startswith(head_prefix) else name] = tensor
    head_bias = sd.pop("head.bias")
    sd.pop("roberta.embeddings.word_embeddings.weight", None)
    sd.pop("head.decoder_weight", None)
    step_cfg = dataclasses.replace(primary_cfg, vocab_size=target_vocab, mini_head=False, mini_layers=None,
                                   activation_checkpointing=cfg.activation_checkpointing)
    return Step2Model(primary_cfg, primary_sd, step_cfg, depth, sd, head_bias, kind)


def initial_embeddings(src: Step2Model, target_tok, init: str, source_tok, seed: int):
    """(embeddings, head bias, rows copied) for the new vocabulary: --init normal or overlap."""
    from ..focus import shared_pieces
    from ..model import fresh_embedding_rows

    emb = fresh_embedding_rows(src.step_cfg, seed)
    bias = torch.zeros(src.step_cfg.vocab_size)
    shared = {}
    if init == "overlap":
        source_emb = src.primary_sd["roberta.embeddings.word_embeddings.weight"]
        shared = shared_pieces(target_tok, source_tok, source_emb.shape[0])
        for tid, sid in shared.items():
            emb[tid], bias[tid] = source_emb[sid], src.head_bias_source[sid]
    emb[src.step_cfg.pad_token_id] = 0.0
    return emb, bias, len(shared)


def focus_embeddings(src: Step2Model, target_tok, source_tok, texts, min_count: int, seed: int,
                     names: tuple = ("--tokenizer", "--source_tokenizer")):
    """--init focus (mmadapt/focus.py): a FocusStart (embeddings, head bias, counts, seconds). Deterministic
    for a seed, so every rank computes the same; the stage still broadcasts rank 0's (see Adapt.load_data)."""
    from ..focus import focus_start
    from ..model import fresh_embedding_rows

    start = focus_start(fresh_embedding_rows(src.step_cfg, seed),
                        src.primary_sd["roberta.embeddings.word_embeddings.weight"], src.head_bias_source,
                        target_tok, source_tok, texts, min_count, names)
    start.embeddings[src.step_cfg.pad_token_id] = 0.0
    return start


def same_on_every_rank(*tensors: torch.Tensor) -> None:
    """Rank 0's values, in place, on every rank: one start for all even where floating point differs."""
    import torch.distributed as dist

    from .. import engine as eng

    if dist.is_initialized() and dist.get_world_size() > 1:
        for t in tensors:
            buf = t.to(eng.device())
            dist.broadcast(buf, 0)
            t.copy_(buf.cpu())


def gathered_language_params(engine) -> tuple[torch.Tensor, torch.Tensor]:
    """Full copies of the trained embeddings and head bias on every rank (ZeRO-3 gathers them)."""
    from ..engine import full_copies

    module = engine.module
    return tuple(full_copies([module.roberta.embeddings.word_embeddings.weight, module.head.bias]))


def check_adapt_inputs(cfg: AdaptConfig, data_cfg) -> None:
    from ..data import check_text_file

    for path in cfg.eval_files:
        check_text_file(path, data_cfg.text_field)
    if cfg.eval_every < 1:
        raise ConfigError(f"--eval_every {cfg.eval_every} must be >= 1; fix: give a positive value")
    if cfg.focus_min_count < 1:
        raise ConfigError(f"--focus_min_count {cfg.focus_min_count} must be >= 1; fix: give a positive count")
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
        from ..artifacts import read_finetune_meta
        from ..evaluators import common_task, zero_shot_figures
        from ..tasks import load_examples

        spec = common_task([read_finetune_meta(path, "--task_models") for path in cfg.task_models])
        for path in filter(None, (cfg.task_eval_file, cfg.task_dev_file)):
            load_examples(spec, path)  # fields and labels (classify: within the models' N), before any output
        reported = [f"zero_shot_{name}" for name in zero_shot_figures(spec)]
        if cfg.select_by.startswith("zero_shot_") and cfg.select_by not in reported:
            raise ConfigError(f"--select_by {cfg.select_by}: the --task_models ({spec.name}) report "
                              f"{', '.join(reported)}; fix: select by one of them")
    wanted = cfg.task_models if cfg.select_by.startswith("zero_shot_") else \
        {"eval_loss": cfg.eval_files, "retrieval_top1": cfg.parallel_file}[cfg.select_by]
    if not wanted and cfg.select_by != "eval_loss":  # eval_loss is the default: no evaluation, no choice
        raise ConfigError(f"--select_by {cfg.select_by} has nothing to measure it; fix: pass the matching "
                          "--eval_files / --parallel_file / --task_models")


class Adapt(MLMStage):
    name = "adapt"
    sections = {"adapt": AdaptConfig, "data": DataConfig, "train": TrainConfig}
    must_match = ("adapt",)

    def __init__(self, sections: dict):
        super().__init__(sections)
        self.evaluator = None  # the primary model's evaluation, when anything is to be measured
        self.best: dict = {"value": None, "step": None}

    def prepare(self) -> None:
        from ..artifacts import model_dir
        from ..tokenizer import load_tokenizer

        cfg, data_cfg = self.s["adapt"], self.s["data"]
        if cfg.model:
            cfg = self.s["adapt"] = dataclasses.replace(cfg, model=model_dir(cfg.model))
        check_train_inputs(data_cfg, self.train)
        check_adapt_inputs(cfg, data_cfg)
        self.target_tok = self.tokenizer = load_tokenizer(data_cfg.tokenizer)
        self.src = load_step2_source(cfg, len(self.target_tok))
        if data_cfg.max_seq_length + 2 > self.src.step_cfg.max_position_embeddings:
            raise ConfigError(f"--max_seq_length {data_cfg.max_seq_length} needs {data_cfg.max_seq_length + 2} "
                              f"positions, the model has {self.src.step_cfg.max_position_embeddings}; fix: lower it")
        needs_source = cfg.init != "normal" or cfg.parallel_file
        self.source_tok = load_tokenizer(cfg.source_tokenizer or cfg.model) if needs_source else None
        self.focus = None
        if cfg.init == "focus":  # on every rank, before anything is written: bad input is one line on each
            from ..data import iter_texts

            if not data_cfg.train_files:
                raise ConfigError("--init focus trains its fastText vectors on --train_files; fix: pass the "
                                  "target text as --train_files, or use --init overlap")
            self.focus = focus_embeddings(
                self.src, self.target_tok, self.source_tok, iter_texts(data_cfg.train_files, data_cfg.text_field),
                cfg.focus_min_count, self.train.seed,
                (f"--tokenizer {data_cfg.tokenizer}", f"--source_tokenizer {cfg.source_tokenizer or cfg.model}"))
        self.resolve_ds()

    def load_data(self, rank: int, world: int) -> None:
        from .. import engine as eng
        from ..data import build_blocks

        cfg, d = self.s["adapt"], self.s["data"]
        self.load_mlm_data(rank, world, self.target_tok)
        self.eval_blocks = None
        if cfg.eval_files:
            blocks = build_blocks(self.target_tok, d.max_seq_length, cfg.eval_files, text_field=d.text_field,
                                  cache_dir=d.cache_dir, is_main=rank == 0, barrier=eng.barrier)
            self.eval_blocks = blocks.select(range(min(cfg.eval_blocks, len(blocks))))
        if self.focus:
            self.init_emb, self.init_bias, self.copied = self.focus.embeddings, self.focus.bias, self.focus.copied
            same_on_every_rank(self.init_emb, self.init_bias)
        else:
            self.init_emb, self.init_bias, self.copied = initial_embeddings(self.src, self.target_tok, cfg.init,
                                                                            self.source_tok, self.train.seed)

    def describe_data(self) -> str:
        src, f = self.src, self.focus
        focus = (f"; FOCUS: {f.combined} combined from overlapping rows, {f.fallen_back} fell back to normal "
                 f"(no fastText vector), {f.seconds:.1f} s before step 2") if f else ""
        return (f"step 2 through {src.kind} ({src.depth} of {src.primary_cfg.num_layers} layers); "
                f"{len(self.target_tok)} target tokens, {self.copied} rows copied from the source" + focus)

    def build(self):
        from ..model import MiniModel

        return MiniModel(self.src.step_cfg, depth=self.src.depth)

    def load(self, model) -> None:
        from ..hf_io import load_into

        load_into(model, {**self.src.state_dict, TRAINABLE[0]: self.init_emb, TRAINABLE[1]: self.init_bias})
        # Now in the engine's partitions: whole fp32 copies kept past here would stay for the whole stage on
        # every rank (at XLM-R large through the full body, 1.2 GB of layers and 1 GB of new rows).
        self.src.state_dict = {}
        self.init_emb = self.init_bias = None
        if self.focus is not None:
            self.focus.embeddings = self.focus.bias = None

    def trainable(self, name: str) -> bool:
        return name == TRAINABLE[0] or (name == TRAINABLE[1] and self.s["adapt"].train_head_bias)

    def step_flops(self):
        from ..flops import step_flops

        src = self.src
        return step_flops(src.step_cfg, self.s["data"].max_seq_length, self.train.global_batch_size, self.predicted,
                          src.depth, [src.depth], set(), True, False, self.s["adapt"].activation_checkpointing,
                          fused_attention_runs(src.step_cfg))

    def meta(self) -> dict:
        from ..packs import body_checksum

        cfg, src = self.s["adapt"], self.src
        return {"source_model": os.path.abspath(cfg.model), "source_checksum": body_checksum(src.primary_sd),
                "through": cfg.through, "mini_kind": src.kind, "depth": src.depth, "init": cfg.init,
                "rows_copied": self.copied, "vocab_size": len(self.target_tok),
                "hidden_size": src.step_cfg.hidden_size, "select_by": cfg.select_by,
                # a one-time cost before step 2, like MiniPost's step 1b: not in step 2's FLOPs or seconds
                **({"focus": self.focus.report()} if self.focus else {})}

    def evaluation(self, engine, resumed: dict, rank: int):
        """The primary model's figures every --eval_every steps; the best (by --select_by, on dev when
        there is a dev split) is saved as the pack's best embeddings and travels in every checkpoint."""
        from .. import engine as eng
        from ..artifacts import BEST_EMBEDDINGS_FILE, RunDir, save_pack
        from ..evaluators import PrimaryEvaluator
        from ..flops import measure_forward_flops
        from ..masking import Masker
        from ..verdict import improves

        cfg = self.s["adapt"]
        if not (cfg.eval_files or cfg.parallel_file or cfg.task_models):
            return None
        batches = []
        if self.eval_blocks is not None:
            masker, g = Masker(self.target_tok, self.s["data"].mlm_probability), torch.Generator().manual_seed(1234)
            batches = [masker(self.eval_blocks[i:i + 16]["input_ids"], g) for i in range(0, len(self.eval_blocks), 16)]
        pair_files = {p: f for p, f in (("", cfg.parallel_file), ("dev_", cfg.parallel_dev_file)) if f}
        task_files = {p: f for p, f in (("", cfg.task_eval_file), ("dev_", cfg.task_dev_file)) if f}
        self.evaluator = PrimaryEvaluator(self.src.primary_cfg, self.src.primary_sd, self.target_tok, self.ds, batches,
                                          self.source_tok, pair_files, cfg.parallel_limit, cfg.task_models, task_files)
        # A resumed run must not take its first evaluation for the best (mmadapt pipeline resumes on its own).
        self.best = {"value": resumed.get("best_value"), "step": resumed.get("best_step")}
        self.eval_flops = {"per_evaluation": None, "evaluations": 0}
        higher_is_better, meta, out = cfg.select_by != "eval_loss", self.meta(), self.train.output_dir

        def evaluate(step: int) -> dict:
            emb_now, bias_now = gathered_language_params(engine)
            if self.eval_flops["per_evaluation"] is None:  # every evaluation reads the same inputs: count once
                figures, flops = measure_forward_flops(lambda: self.evaluator(emb_now, bias_now))
                self.eval_flops["per_evaluation"] = flops
            else:
                figures = self.evaluator(emb_now, bias_now)  # the same on every rank, so is `best`
            self.eval_flops["evaluations"] += 1
            value = figures.get("dev_" + cfg.select_by, figures.get(cfg.select_by))  # dev when there is one
            # Step 0 is the initial embeddings: the best is a trained state, the earliest of equals.
            if step > 0 and improves(value, self.best["value"], higher_is_better):
                self.best.update(value=value, step=step)
                if rank == 0:
                    save_pack(out, emb_now, bias_now, RunDir(out).tokenizer,
                              {**meta, "best_step": step, cfg.select_by: value}, filename=BEST_EMBEDDINGS_FILE)
            eng.barrier()
            return figures if rank == 0 else {}

        def checkpoint_state(step: int) -> dict:
            return {"best_value": self.best["value"], "best_step": self.best["step"]}

        return evaluate, cfg.eval_every, checkpoint_state

    def finish(self, engine, trainer, summary, rank, world) -> Finish:
        import torch.distributed as dist

        from .. import engine as eng
        from ..artifacts import RunDir, save_pack

        cfg, out, best = self.s["adapt"], self.train.output_dir, self.best
        emb_final, bias_final = gathered_language_params(engine)
        fields = {**self.meta(), "best_step": best["step"], "best_value": best["value"]}
        if self.evaluator is not None:
            local, full = eng.local_parameter_count(self.evaluator.model)
            # Evaluation is not step-2 compute: its FLOPs (all ranks, this run's evaluations) are apart.
            per_rank = torch.tensor([self.eval_flops["per_evaluation"] or 0.0], dtype=torch.float64, device=eng.device())
            if dist.is_initialized() and world > 1:
                dist.all_reduce(per_rank)
            fields.update(eval_parameters=full, eval_parameters_this_rank=local,
                          eval_flops_per_evaluation=per_rank.item(),
                          eval_flops=per_rank.item() * self.eval_flops["evaluations"])
        pack_meta = {**self.meta(), "steps": summary["steps"], "flops": summary["flops"],
                     "best_step": best["step"], "best_" + cfg.select_by: best["value"]}
        last = trainer.eval_history[-1] if trainer.eval_history else {}
        return Finish(fields=fields,
                      save=lambda: save_pack(out, emb_final, bias_final, RunDir(out).tokenizer, pack_meta),
                      done=f"step 2 through {self.src.kind}, {summary['flops']:.3g} FLOPs"
                           + (f", primary eval loss {last['eval_loss']:.4f}" if "eval_loss" in last else ""))
