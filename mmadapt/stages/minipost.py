"""Step 1b, MiniPost: a mini-model built on top of an ordinary pretrained model.

    deepspeed --num_gpus 2 launchers/minipost.py --deepspeed_config ds_configs/zero3_cpu.json \
        --model runs/mlm/hf --extract_layers 2 --new_layers 2 --train_files en.txt \
        --output_dir runs/minipost

The pretrained model's embeddings and bottom K layers are copied bit for bit and frozen (they run
without autograd); N new transformer layers and a new MLM head (its projection tied to the frozen
embeddings) train on source-language MLM. The output records which primary model it belongs to and
a checksum of the shared weights, so step 2 refuses a mismatched pair.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Optional

from ..config import DataConfig, TrainConfig, _f
from ..errors import ConfigError
from ..flops import fused_attention_runs
from .pretrain import MLMStage
from .runner import Finish, check_train_inputs


@dataclass
class MiniPostConfig:
    model: Optional[str] = _f(None, "the primary model: a Hugging Face MLM directory (or a pretraining run "
                              "directory: its hf/)", aliases=("--from_pretrained",))
    extract_layers: int = _f(2, "K: the bottom layers copied and frozen")
    new_layers: int = _f(2, "N: new transformer layers trained on top")
    activation_checkpointing: bool = _f(False, "recompute each new layer in backward")


class MiniPost(MLMStage):
    name = "minipost"
    sections = {"minipost": MiniPostConfig, "data": DataConfig, "train": TrainConfig}
    must_match = ("minipost",)

    def prepare(self) -> None:
        from ..artifacts import model_dir
        from ..hf_io import pretrained_model_config
        from ..tokenizer import load_tokenizer

        cfg, data_cfg = self.s["minipost"], self.s["data"]
        if not cfg.model:
            raise ConfigError("--model is missing; fix: pass the pretrained model's directory")
        cfg = self.s["minipost"] = dataclasses.replace(cfg, model=model_dir(cfg.model))
        data_cfg = self.s["data"] = dataclasses.replace(data_cfg, tokenizer=data_cfg.tokenizer or cfg.model)
        check_train_inputs(data_cfg, self.train)
        self.primary_cfg = pretrained_model_config(cfg.model)
        k, n = cfg.extract_layers, cfg.new_layers
        if not 1 <= k <= self.primary_cfg.num_layers - 1:
            raise ConfigError(f"--extract_layers {k} is outside 1..{self.primary_cfg.num_layers - 1} for a "
                              f"{self.primary_cfg.num_layers}-layer model; fix: pick a layer in that range")
        if n < 1:
            raise ConfigError(f"--new_layers {n} must be >= 1; fix: add at least one new layer")
        self.tokenizer = load_tokenizer(data_cfg.tokenizer)
        if len(self.tokenizer) != self.primary_cfg.vocab_size:
            raise ConfigError(f"--tokenizer has {len(self.tokenizer)} tokens, {cfg.model} has "
                              f"{self.primary_cfg.vocab_size}; fix: use the pretrained model's own tokenizer")
        self.mini_cfg = dataclasses.replace(self.primary_cfg, mini_head=False, mini_layers=None,
                                            activation_checkpointing=cfg.activation_checkpointing)
        self.resolve_ds()

    def load_data(self, rank: int, world: int) -> None:
        self.load_mlm_data(rank, world, self.tokenizer)

    def build(self):
        from ..model import MiniModel

        cfg = self.s["minipost"]
        return MiniModel(self.mini_cfg, depth=cfg.extract_layers + cfg.new_layers, frozen_bottom=cfg.extract_layers)

    def load(self, model) -> None:
        from ..hf_io import load_into, load_pretrained_state_dict
        from ..packs import checksum, shared_bottom_names

        self.primary_sd = load_pretrained_state_dict(self.s["minipost"].model)
        self.shared_names = shared_bottom_names(self.primary_sd, self.s["minipost"].extract_layers)
        load_into(model, {name: self.primary_sd[name] for name in self.shared_names}, strict_prefixes=())
        self.shared_checksum = checksum(self.primary_sd, self.shared_names)  # step 2 checks its --model by it

    def trainable(self, name: str) -> bool:
        return name not in self.shared_names

    def step_flops(self):
        from ..flops import minipost_step_flops

        cfg = self.s["minipost"]
        return minipost_step_flops(self.mini_cfg, self.s["data"].max_seq_length, self.train.global_batch_size,
                                   self.predicted, cfg.extract_layers, cfg.new_layers,
                                   fused_attention=fused_attention_runs(self.mini_cfg))

    def finish(self, engine, trainer, summary, rank, world) -> Finish:
        from .. import engine as eng
        from ..artifacts import save_minipost
        from ..packs import body_checksum

        cfg = self.s["minipost"]
        state = eng.gathered_state_dict(engine.module)
        state.pop("head.decoder_weight", None)  # tied to the frozen embeddings: the primary model has it
        meta = {"primary_model": os.path.abspath(cfg.model), "extract_layers": cfg.extract_layers,
                "new_layers": cfg.new_layers, "shared_checksum": self.shared_checksum,
                "primary_checksum": body_checksum(self.primary_sd), "model_config": dataclasses.asdict(self.mini_cfg)}
        return Finish(fields=meta, save=lambda: save_minipost(self.train.output_dir, state, meta),
                      done=f"MiniPost, {cfg.extract_layers} frozen + {cfg.new_layers} new layers")
