"""Step 1b, MiniPost: a mini-model built on top of an ordinary pretrained model.

    deepspeed --num_gpus 2 launchers/minipost.py --deepspeed_config ds_configs/zero3_cpu.json \
        --from_pretrained runs/mlm/hf --extract_layers 2 --new_layers 2 --train_files en.txt \
        --output_dir runs/minipost

The pretrained model's embeddings and bottom K layers are copied bit for bit and frozen (they run
without autograd); N new transformer layers and a new MLM head (its projection tied to the frozen
embeddings) train on source-language MLM. The output records which primary model it belongs to and
a checksum of the shared weights, so step 2 refuses a mismatched pair.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from typing import Optional

from ..config import DataConfig, TrainConfig, _f, to_dict
from ..errors import ConfigError
from .adapt import MINIPOST_META
from .common import (check_output_dir, check_train_inputs, stage_main, world_from_env, write_run_config,
                     write_summary)


@dataclass
class MiniPostConfig:
    from_pretrained: Optional[str] = _f(None, "the primary model: a Hugging Face MLM directory")
    extract_layers: int = _f(2, "K: the bottom layers copied and frozen")
    new_layers: int = _f(2, "N: new transformer layers trained on top")
    activation_checkpointing: bool = _f(False, "recompute each new layer in backward")


SECTIONS = {"minipost": MiniPostConfig, "data": DataConfig, "train": TrainConfig}


def run(sections: dict) -> dict:
    import torch
    from safetensors.torch import save_file

    from .. import engine as eng
    from ..data import BatchPlan, build_blocks
    from ..ds_config import resolve_ds_config
    from ..flops import minipost_step_flops
    from ..hf_io import load_into, load_pretrained_state_dict, pretrained_model_config
    from ..masking import Masker
    from ..model import MiniModel
    from ..packs import body_checksum, checksum, module_checksum, shared_bottom_names
    from ..tokenizer import load_tokenizer
    from ..trainer import Trainer, mlm_batches

    cfg, data_cfg, train = sections["minipost"], sections["data"], sections["train"]
    if not cfg.from_pretrained:
        raise ConfigError("--from_pretrained is missing; fix: pass the pretrained model's directory")
    data_cfg = dataclasses.replace(data_cfg, tokenizer=data_cfg.tokenizer or cfg.from_pretrained)
    check_train_inputs(data_cfg, train)
    primary_cfg = pretrained_model_config(cfg.from_pretrained)
    k, n, depth = cfg.extract_layers, cfg.new_layers, cfg.extract_layers + cfg.new_layers
    if not 1 <= k <= primary_cfg.num_layers - 1:
        raise ConfigError(f"--extract_layers {k} is outside 1..{primary_cfg.num_layers - 1} for a "
                          f"{primary_cfg.num_layers}-layer model; fix: pick a layer in that range")
    if n < 1:
        raise ConfigError(f"--new_layers {n} must be >= 1; fix: add at least one new layer")
    tokenizer = load_tokenizer(data_cfg.tokenizer)
    if len(tokenizer) != primary_cfg.vocab_size:
        raise ConfigError(f"--tokenizer has {len(tokenizer)} tokens, {cfg.from_pretrained} has "
                          f"{primary_cfg.vocab_size}; fix: use the pretrained model's own tokenizer")
    ds, train = resolve_ds_config(train.deepspeed_config, train, world_from_env())
    resolved = to_dict({"minipost": cfg, "data": data_cfg, "train": train})
    check_output_dir(train.output_dir, train.resume, resolved, must_match=("minipost",))

    rank, world = eng.init_distributed()
    blocks = build_blocks(tokenizer, data_cfg.max_seq_length, data_cfg.train_files, data_cfg.dataset_name,
                          data_cfg.dataset_config, data_cfg.text_field, data_cfg.cache_dir,
                          is_main=rank == 0, barrier=eng.barrier)
    plan = BatchPlan(len(blocks), train.global_batch_size, train.micro_batch_size, world, train.seed)
    if rank == 0:
        write_run_config(train.output_dir, resolved, tokenizer)
    eng.barrier()

    primary_sd = load_pretrained_state_dict(cfg.from_pretrained)
    shared_names = shared_bottom_names(primary_sd, k)
    mini_cfg = dataclasses.replace(primary_cfg, mini_head=False, mini_layers=None,
                                   activation_checkpointing=cfg.activation_checkpointing)
    torch.manual_seed(train.seed)
    model = eng.build_under_zero(lambda: MiniModel(mini_cfg, depth=depth, frozen_bottom=k), ds)
    load_into(model, {name: primary_sd[name] for name in shared_names}, strict_prefixes=())
    for name, p in model.named_parameters():
        p.requires_grad = name not in shared_names
    frozen_before = checksum(primary_sd, shared_names)
    engine, start, _ = eng.initialize_or_resume(model, ds, train.output_dir, train.resume)

    predicted = train.global_batch_size * data_cfg.max_seq_length * data_cfg.mlm_probability
    flops = minipost_step_flops(mini_cfg, data_cfg.max_seq_length, train.global_batch_size, predicted, k, n)
    batches = mlm_batches(blocks, plan, Masker(tokenizer, data_cfg.mlm_probability), train.seed, rank)
    trainer = Trainer(engine, train, batches, train.global_batch_size * data_cfg.max_seq_length, flops,
                      train.output_dir, rank, world, start_step=start)
    summary = trainer.run()
    frozen_after = module_checksum(engine.module, shared_names)
    state = eng.gathered_state_dict(engine.module)
    if frozen_after != frozen_before:
        raise RuntimeError(f"MiniPost changed the extracted weights ({frozen_before} -> {frozen_after})")
    meta = {"primary_model": os.path.abspath(cfg.from_pretrained), "extract_layers": k, "new_layers": n,
            "shared_checksum": frozen_before, "primary_checksum": body_checksum(primary_sd),
            "model_config": dataclasses.asdict(mini_cfg)}
    summary.update(meta, frozen_checksum_after=frozen_after)
    if rank == 0:
        state.pop("head.decoder_weight", None)
        save_file({k_: v.contiguous() for k_, v in state.items()},
                  os.path.join(train.output_dir, "mini_model.safetensors"))
        with open(os.path.join(train.output_dir, MINIPOST_META), "w", encoding="utf-8") as fh:
            json.dump(meta, fh, indent=2)
        write_summary(train.output_dir, summary)
        print(f"done: MiniPost {k} frozen + {n} new layers, step {summary['steps']}, "
              f"loss {summary['final_loss']:.4f}", flush=True)
    eng.barrier()
    return summary


def main(argv=None) -> int:
    return stage_main("minipost", __doc__, SECTIONS, run, argv)


if __name__ == "__main__":
    from ..engine import exit_process

    exit_process(main())
