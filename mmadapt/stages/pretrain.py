"""Step 1: MiniJoint (or, with --no_mini_head, plain MLM) pretraining under DeepSpeed.

    deepspeed --num_gpus 2 launchers/minijoint.py --deepspeed_config ds_configs/zero3_cpu.json \
        --model tiny --train_files text.txt --tokenizer tok/ --output_dir runs/mj --max_steps 200

Everything that can be wrong with the input is checked before the process group starts or any file is
written; a problem is one line on stderr and exit status 2.
"""

from __future__ import annotations

import dataclasses
import os

from ..config import SECTIONS, resolve_model, to_dict
from ..errors import ConfigError
from .common import (check_output_dir, check_train_inputs, stage_main, world_from_env, write_run_config,
                     write_summary)


def prepare(sections: dict):
    """Validate everything; returns (model cfg, data cfg, train cfg, ds dict, tokenizer, pretrained)."""
    from ..ds_config import resolve_ds_config
    from ..hf_io import is_pretrained_ref, read_pretrained_arch
    from ..tokenizer import load_tokenizer

    model_cfg, data_cfg, train = sections["model"], sections["data"], sections["train"]
    check_train_inputs(data_cfg, train)
    tokenizer = load_tokenizer(data_cfg.tokenizer)
    pretrained = None
    if is_pretrained_ref(model_cfg.model):
        pretrained = read_pretrained_arch(model_cfg.model)
        model_cfg = dataclasses.replace(model_cfg, **{
            k: v for k, v in pretrained["extras"].items()
            if k not in ("mini_layers", "mini_head") or getattr(model_cfg, k) is None})
    model_cfg = resolve_model(model_cfg, tokenizer_vocab=len(tokenizer),
                              pretrained=pretrained["arch"] if pretrained else None)
    if data_cfg.max_seq_length + 2 > model_cfg.max_position_embeddings:
        raise ConfigError(f"--max_seq_length {data_cfg.max_seq_length} needs {data_cfg.max_seq_length + 2} "
                          f"positions, the model has {model_cfg.max_position_embeddings}; fix: lower "
                          "--max_seq_length")
    ds, train = resolve_ds_config(train.deepspeed_config, train, world_from_env())
    return model_cfg, data_cfg, train, ds, tokenizer, pretrained


def run(sections: dict) -> dict:
    from .. import engine as eng
    from ..data import BatchPlan, build_blocks, text_unigram_entropy
    from ..flops import pretrain_step_flops
    from ..hf_io import export_hf, load_into, load_pretrained_state_dict
    from ..masking import Masker
    from ..model import MiniJointForMaskedLM
    from ..trainer import Trainer, mlm_batches

    model_cfg, data_cfg, train, ds, tokenizer, pretrained = prepare(sections)
    resolved = to_dict({"model": model_cfg, "data": data_cfg, "train": train})
    check_output_dir(train.output_dir, train.resume, resolved)

    rank, world = eng.init_distributed()
    blocks = build_blocks(tokenizer, data_cfg.max_seq_length, data_cfg.train_files,
                          data_cfg.dataset_name, data_cfg.dataset_config, data_cfg.text_field,
                          data_cfg.cache_dir, is_main=rank == 0, barrier=eng.barrier)
    plan = BatchPlan(len(blocks), train.global_batch_size, train.micro_batch_size, world, train.seed)
    entropy = text_unigram_entropy(blocks, tokenizer)
    if rank == 0:
        write_run_config(train.output_dir, resolved, tokenizer)
        print(f"data: {len(blocks)} blocks of {data_cfg.max_seq_length} tokens; unigram entropy "
              f"{entropy:.3f} nats; {plan.steps_per_epoch} steps per epoch", flush=True)
    eng.barrier()

    import torch
    torch.manual_seed(train.seed)
    model = eng.build_under_zero(lambda: MiniJointForMaskedLM(model_cfg), ds)
    if pretrained is not None:
        load_into(model, load_pretrained_state_dict(model_cfg.model))
    local, full = eng.local_parameter_count(model)
    engine, start, _ = eng.initialize_or_resume(model, ds, train.output_dir, train.resume)

    predicted = train.global_batch_size * data_cfg.max_seq_length * data_cfg.mlm_probability
    flops = pretrain_step_flops(model_cfg, data_cfg.max_seq_length, train.global_batch_size, predicted)
    batches = mlm_batches(blocks, plan, Masker(tokenizer, data_cfg.mlm_probability), train.seed, rank)
    trainer = Trainer(engine, train, batches, train.global_batch_size * data_cfg.max_seq_length, flops,
                      train.output_dir, rank, world, start_step=start)
    summary = trainer.run()
    local_all = [None] * world
    import torch.distributed as dist
    dist.all_gather_object(local_all, local)
    summary.update(parameters=full, parameters_per_rank=local_all, unigram_entropy=entropy,
                   zero_stage=int(ds.get("zero_optimization", {}).get("stage", 0)))

    if rank == 0:
        ckpt = os.path.join(train.output_dir, "checkpoints")
        if train.export_hf and summary["steps"] == train.max_steps:
            sd = eng.consolidated_state_dict(ckpt, eng.latest_tag(ckpt))
            export_hf(sd, model_cfg, os.path.join(train.output_dir, "hf"),
                      os.path.join(train.output_dir, "tokenizer"))
        write_summary(train.output_dir, summary)
        print(f"done: step {summary['steps']}, loss {summary['final_loss']:.4f}"
              + (f", mini loss {summary['final_mini_loss']:.4f}" if summary["final_mini_loss"] else "")
              + f" (unigram entropy {entropy:.3f}); {summary['tokens_per_s']:.0f} tokens/s", flush=True)
    eng.barrier()
    return summary


def main(argv=None) -> int:
    return stage_main("minijoint", __doc__, SECTIONS, run, argv)


if __name__ == "__main__":
    from ..engine import exit_process

    exit_process(main())
