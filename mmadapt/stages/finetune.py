"""Step 3: fine-tune the primary model on a source-language task with its embeddings frozen.

    deepspeed --num_gpus 2 launchers/finetune.py --deepspeed_config ds_configs/zero3_cpu.json \
        --task xnli --model runs/mj/hf --train_files mnli.train.jsonl --eval_files xnli.en.test.jsonl \
        --output_dir runs/xnli-en

The embeddings (token, position, their LayerNorm) stay frozen so that step 4 can swap in another
language's token embeddings; the body and the task head train. The output records the source model's
checksum, so step 4 refuses a language pack learned for another model.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Optional

from ..config import TrainConfig, _f
from ..errors import ConfigError
from ..flops import fused_attention_runs
from .runner import Finish, Stage, check_steps


@dataclass
class FinetuneConfig:
    task: str = _f("xnli", "xnli, pawsx, classify (one text, integer label 0..N-1) or mlqa (SQuAD-format "
                   "training data)", choices=("xnli", "pawsx", "classify", "mlqa"))
    num_labels: Optional[int] = _f(None, "classify: the number of labels N (none: the training data's largest "
                                   "label + 1)")
    model: Optional[str] = _f(None, "the primary model's Hugging Face directory (or a pretraining run directory)")
    tokenizer: Optional[str] = _f(None, "source tokenizer (none: the model directory's)")
    train_files: list = _f([], "local training files in the task's schema (.jsonl or .tsv)", aliases=("--train_file",))
    eval_files: list = _f([], "local source-language test files, scored at the end", aliases=("--eval_file",))
    dataset_name: Optional[str] = _f(None, "hub dataset instead of files (xnli, paws-x, squad)")
    dataset_config: Optional[str] = _f(None, "its config (e.g. en)")
    max_seq_length: int = _f(128, "tokens per example (text, pair, or question + context)")
    epochs: Optional[float] = _f(None, "passes over the training data (sets --max_steps)")
    pooling: str = _f("cls", "pair and classify tasks: classify from the <s> state (cls, as Hugging Face) or "
                      "the mean of all states (mean: learns faster in small models)", choices=("cls", "mean"))
    dropout: Optional[float] = _f(None, "hidden and attention dropout while fine-tuning (none: the model's config)")


class Finetune(Stage):
    name = "finetune"
    sections = {"finetune": FinetuneConfig, "train": TrainConfig}
    must_match = ("finetune",)

    def prepare(self) -> None:
        from ..artifacts import model_dir
        from ..hf_io import pretrained_model_config
        from ..tasks import load_examples, task_spec, with_labels_of
        from ..tokenizer import load_tokenizer

        cfg = self.s["finetune"]
        self.spec = task_spec(cfg.task, cfg.num_labels)
        if not cfg.model:
            raise ConfigError("--model is missing; fix: pass the primary model's Hugging Face directory")
        cfg = self.s["finetune"] = dataclasses.replace(cfg, model=model_dir(cfg.model))
        if not self.train.output_dir:
            raise ConfigError("--output_dir is missing; fix: pass --output_dir DIR")
        if cfg.dropout is not None and not 0.0 <= cfg.dropout < 1.0:
            raise ConfigError(f"--dropout {cfg.dropout}: not a dropout probability; fix: give a value in [0, 1)")
        self.examples = load_examples(self.spec, cfg.train_files, cfg.dataset_name, cfg.dataset_config, "train")
        self.spec = with_labels_of(self.spec, self.examples, cfg.dataset_name or " ".join(cfg.train_files))
        if self.spec.kind == "single":  # resolved: the run's config says N, however it was found
            cfg = self.s["finetune"] = dataclasses.replace(cfg, num_labels=len(self.spec.labels))
        self.eval_examples = load_examples(self.spec, cfg.eval_files) if cfg.eval_files else None
        self.tokenizer = load_tokenizer(cfg.tokenizer or cfg.model)
        model_cfg = pretrained_model_config(cfg.model)
        if len(self.tokenizer) != model_cfg.vocab_size:
            raise ConfigError(f"--tokenizer has {len(self.tokenizer)} tokens, the model {model_cfg.vocab_size}; "
                              "fix: use the model's own (source) tokenizer")
        self.task_cfg = dataclasses.replace(model_cfg, mini_head=False, mini_layers=None)
        if cfg.dropout is not None:
            self.task_cfg = dataclasses.replace(self.task_cfg, hidden_dropout=cfg.dropout, attention_dropout=cfg.dropout)
        if cfg.epochs is not None:
            self.train = self.s["train"] = dataclasses.replace(
                self.train, max_steps=max(1, round(cfg.epochs * len(self.examples) / self.train.global_batch_size)))
        check_steps(self.train)
        self.resolve_ds()

    def load_data(self, rank: int, world: int) -> None:
        from ..data import BatchPlan
        from ..tasks import encode_pairs, encode_qa

        length = self.s["finetune"].max_seq_length
        if self.spec.classifies:
            self.ids, self.labels = encode_pairs(self.examples, self.tokenizer, length)
        else:
            self.ids, self.labels, _, _, _ = encode_qa(self.examples, self.tokenizer, length, train=True)
        t = self.train
        self.plan = BatchPlan(len(self.ids), t.global_batch_size, t.micro_batch_size, world, t.seed)

    def build(self):
        from ..tasks import build_task_model

        return build_task_model(self.spec, self.task_cfg, self.s["finetune"].pooling)

    def load(self, model) -> None:
        from ..hf_io import load_into, load_pretrained_state_dict, select_keys

        self.primary_sd = load_pretrained_state_dict(self.s["finetune"].model)
        load_into(model, select_keys(self.primary_sd, lambda k: k.startswith("roberta.")), strict_prefixes=("roberta.",))

    def trainable(self, name: str) -> bool:
        return not name.startswith("roberta.embeddings.")

    def batches(self, rank: int):
        ids, labels, plan = self.ids, self.labels, self.plan

        def make(step: int, micro: int) -> tuple:
            idx = plan.indices(step, micro, rank)
            return ids[idx], labels[idx]
        return make

    def step_flops(self):
        from ..flops import finetune_step_flops

        return finetune_step_flops(self.task_cfg, self.s["finetune"].max_seq_length, self.train.global_batch_size,
                                   len(self.spec.labels) if self.spec.classifies else 2,
                                   fused_attention=fused_attention_runs(self.task_cfg))

    def tokens_per_step(self) -> int:
        return self.train.global_batch_size * self.s["finetune"].max_seq_length

    def finish(self, engine, trainer, summary, rank, world) -> Finish:
        from .. import engine as eng
        from ..artifacts import save_finetuned
        from ..packs import body_checksum
        from ..tasks import build_task_model, score

        cfg, spec = self.s["finetune"], self.spec
        state = eng.gathered_state_dict(engine.module)
        meta = {"task": spec.name, "model_config": dataclasses.asdict(self.task_cfg),
                "source_model": os.path.abspath(cfg.model), "source_checksum": body_checksum(self.primary_sd),
                "max_seq_length": cfg.max_seq_length, "pooling": cfg.pooling, "steps": summary["steps"]}
        if spec.classifies:  # every later reader builds the head and checks its files' labels with this N
            meta["num_labels"] = len(spec.labels)
        fields = {}
        if self.eval_examples is not None and rank == 0:  # scored once, on the full copy rank 0 saves
            trained = build_task_model(spec, dataclasses.replace(self.task_cfg, hidden_dropout=0.0,
                                                                 attention_dropout=0.0), cfg.pooling)
            trained.load_state_dict(state)
            meta["source_score"] = fields["source_score"] = score(spec, trained, self.tokenizer, self.eval_examples,
                                                                  cfg.max_seq_length)
        return Finish(fields=fields, save=lambda: save_finetuned(self.train.output_dir, state, meta),
                      done=f"{spec.name} fine-tuning" + (f", source score {meta['source_score']}"
                                                         if "source_score" in meta else ""))
