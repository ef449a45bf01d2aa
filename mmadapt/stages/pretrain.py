"""Step 1: MiniJoint (or, with --no_mini_head, plain MLM) pretraining under DeepSpeed.

    deepspeed --num_gpus 2 launchers/minijoint.py --deepspeed_config ds_configs/zero3_cpu.json \
        --model tiny --train_files text.txt --tokenizer tok/ --output_dir runs/mj --max_steps 200

Everything that can be wrong with the input is checked before the process group starts or any file is
written; a problem is one line on stderr and exit status 2.
"""

from __future__ import annotations

import dataclasses

from ..config import SECTIONS, resolve_model
from ..errors import ConfigError
from ..flops import fused_attention_runs
from .runner import Finish, Stage, check_train_inputs


class MLMStage(Stage):
    """What the MLM stages (pretraining, MiniPost, step 2) share: packed text blocks, masked batches."""

    def load_mlm_data(self, rank: int, world: int, tokenizer) -> None:
        from .. import engine as eng
        from ..data import BatchPlan, build_blocks, expected_predicted_tokens

        d, t = self.s["data"], self.train
        self.blocks = build_blocks(tokenizer, d.max_seq_length, d.train_files, d.dataset_name, d.dataset_config,
                                   d.text_field, d.cache_dir, is_main=rank == 0, barrier=eng.barrier)
        self.plan = BatchPlan(len(self.blocks), t.global_batch_size, t.micro_batch_size, world, t.seed)
        # Masked positions per step: the masker never picks special or padding tokens.
        self.predicted = expected_predicted_tokens(self.blocks, tokenizer, d.mlm_probability) * t.global_batch_size

    def batches(self, rank: int):
        from ..masking import Masker
        from ..trainer import mlm_batches

        masker = Masker(self.batch_tokenizer(), self.s["data"].mlm_probability)
        return mlm_batches(self.blocks, self.plan, masker, self.train.seed, rank)

    def batch_tokenizer(self):
        return self.tokenizer

    def tokens_per_step(self) -> int:
        return self.train.global_batch_size * self.s["data"].max_seq_length


class Pretrain(MLMStage):
    name = "minijoint"
    sections = SECTIONS
    hidden_flags = ()

    def __init__(self, sections: dict):
        super().__init__(sections)
        self.forget_steps: list = []  # steps at which --forget_every reset the embeddings

    def prepare(self) -> None:
        from ..hf_io import is_pretrained_ref, read_pretrained_arch
        from ..tokenizer import load_tokenizer

        model_cfg, data_cfg = self.s["model"], self.s["data"]
        check_train_inputs(data_cfg, self.train)
        self.tokenizer = load_tokenizer(data_cfg.tokenizer)
        self.pretrained = None
        if is_pretrained_ref(model_cfg.model):
            from ..artifacts import model_dir

            model_cfg = dataclasses.replace(model_cfg, model=model_dir(model_cfg.model))
            self.pretrained = read_pretrained_arch(model_cfg.model)
            model_cfg = dataclasses.replace(model_cfg, **{
                k: v for k, v in self.pretrained["extras"].items()
                if k not in ("mini_layers", "mini_head") or getattr(model_cfg, k) is None})
        model_cfg = resolve_model(model_cfg, tokenizer_vocab=len(self.tokenizer),
                                  pretrained=self.pretrained["arch"] if self.pretrained else None)
        if data_cfg.max_seq_length + 2 > model_cfg.max_position_embeddings:
            raise ConfigError(f"--max_seq_length {data_cfg.max_seq_length} needs {data_cfg.max_seq_length + 2} "
                              f"positions, the model has {model_cfg.max_position_embeddings}; fix: lower "
                              "--max_seq_length")
        self.s["model"] = model_cfg
        self.resolve_ds()

    def load_data(self, rank: int, world: int) -> None:
        from ..data import text_unigram_entropy

        self.load_mlm_data(rank, world, self.tokenizer)
        self.entropy = text_unigram_entropy(self.blocks, self.tokenizer)

    def describe_data(self) -> str:
        return (f"data: {len(self.blocks)} blocks of {self.s['data'].max_seq_length} tokens; unigram entropy "
                f"{self.entropy:.3f} nats; {self.plan.steps_per_epoch} steps per epoch")

    def build(self):
        from ..model import MiniJointForMaskedLM

        return MiniJointForMaskedLM(self.s["model"])

    def load(self, model) -> None:
        from ..hf_io import load_into, load_pretrained_state_dict

        if self.pretrained is not None:
            load_into(model, load_pretrained_state_dict(self.s["model"].model))

    def step_flops(self):
        from ..flops import pretrain_step_flops

        cfg = self.s["model"]
        return pretrain_step_flops(cfg, self.s["data"].max_seq_length, self.train.global_batch_size, self.predicted,
                                   fused_attention=fused_attention_runs(cfg))

    def after_step(self, engine):
        """Active forgetting: fresh token embeddings (tied heads with them) every --forget_every updates."""
        every = self.train.forget_every
        if not every:
            return None
        from .. import engine as eng
        from ..model import fresh_embedding_rows

        def forget(step: int) -> None:
            if step % every or step >= self.train.max_steps:
                return
            rows = fresh_embedding_rows(self.s["model"], self.train.seed * 1_000_003 + step)
            eng.reset_trained_parameter(engine, engine.module.roberta.embeddings.word_embeddings.weight, rows)
            self.forget_steps.append(step)
        return forget

    def finish(self, engine, trainer, summary, rank, world) -> Finish:
        from .. import engine as eng
        from ..artifacts import RunDir
        from ..hf_io import export_hf

        out = RunDir(self.train.output_dir)

        def save() -> None:
            if self.train.export_hf and summary["steps"] == self.train.max_steps:
                sd = eng.consolidated_state_dict(out.checkpoints, eng.latest_tag(out.checkpoints))
                export_hf(sd, self.s["model"], out.hf, out.tokenizer)

        mini = f", mini loss {summary['final_mini_loss']:.4f}" if summary["final_mini_loss"] else ""
        return Finish(fields={"unigram_entropy": self.entropy, "zero_stage": eng.zero_stage(self.ds),
                              "forget_steps": self.forget_steps},
                      save=save, done=f"MLM{mini} (unigram entropy {self.entropy:.3f}); "
                                      f"{summary['tokens_per_s']:.0f} tokens/s")
