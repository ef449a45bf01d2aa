"""Step 3: fine-tune the primary model on a source-language task with its embeddings frozen.

    deepspeed --num_gpus 2 launchers/finetune.py --deepspeed_config ds_configs/zero3_cpu.json \
        --task xnli --model runs/mj/hf --train_file mnli.train.jsonl --eval_file xnli.en.test.jsonl \
        --output_dir runs/xnli-en

The embeddings (token, position, their LayerNorm) stay frozen so that step 4 can swap in another
language's token embeddings; the body and the task head train. The output records the source model's
checksum, so step 4 refuses a language pack learned for another model.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from typing import Optional

from ..config import TrainConfig, _f, to_dict
from ..errors import ConfigError
from .common import check_output_dir, stage_main, world_from_env, write_run_config, write_summary

FINETUNE_META = "finetune.json"
WEIGHTS = "model.safetensors"


@dataclass
class FinetuneConfig:
    task: str = _f("xnli", "xnli, pawsx or mlqa (SQuAD-format training data)", choices=("xnli", "pawsx", "mlqa"))
    model: Optional[str] = _f(None, "the primary model's Hugging Face directory")
    tokenizer: Optional[str] = _f(None, "source tokenizer (default: the model directory's)")
    train_file: Optional[str] = _f(None, "local training file in the task's schema (.jsonl or .tsv)")
    eval_file: Optional[str] = _f(None, "local source-language test file, scored at the end")
    dataset_name: Optional[str] = _f(None, "hub dataset instead of files (xnli, paws-x, squad)")
    dataset_config: Optional[str] = _f(None, "its config (e.g. en)")
    max_seq_length: int = _f(128, "tokens per example (pair or question + context)")
    epochs: Optional[float] = _f(None, "passes over the training data (sets --max_steps)")
    pooling: str = _f("cls", "pair tasks: classify from the <s> state (cls, as Hugging Face) or the mean "
                      "of all states (mean: learns faster in small models)", choices=("cls", "mean"))
    dropout: Optional[float] = _f(None, "hidden and attention dropout while fine-tuning (default: the "
                                  "model's config)")


SECTIONS = {"finetune": FinetuneConfig, "train": TrainConfig}


def save_finetuned(out_dir: str, state: dict, meta: dict) -> None:
    from safetensors.torch import save_file

    state = {k: v.contiguous() for k, v in state.items()}
    save_file(state, os.path.join(out_dir, WEIGHTS + ".tmp"))
    os.replace(os.path.join(out_dir, WEIGHTS + ".tmp"), os.path.join(out_dir, WEIGHTS))
    with open(os.path.join(out_dir, FINETUNE_META), "w", encoding="utf-8") as fh:
        json.dump(meta, fh, indent=2)


def load_finetuned(path: str):
    """(task spec, model in eval mode, source tokenizer, meta) of a fine-tuned directory."""
    from safetensors.torch import load_file

    from ..config import ModelConfig
    from ..tasks import build_task_model, task_spec
    from ..tokenizer import load_tokenizer

    meta_path = os.path.join(path, FINETUNE_META)
    if not os.path.isfile(meta_path):
        raise ConfigError(f"--model {path}: no {FINETUNE_META}; fix: point at a launchers/finetune.py "
                          "--output_dir")
    with open(meta_path, encoding="utf-8") as fh:
        meta = json.load(fh)
    spec = task_spec(meta["task"])
    cfg = dataclasses.replace(ModelConfig(**meta["model_config"]), hidden_dropout=0.0, attention_dropout=0.0)
    model = build_task_model(spec, cfg, meta.get("pooling", "cls"))
    model.load_state_dict(load_file(os.path.join(path, WEIGHTS)))
    return spec, model.eval(), load_tokenizer(os.path.join(path, "tokenizer")), meta


def task_batches(ids, labels, plan, rank):
    def make(step: int, micro: int) -> tuple:
        idx = plan.indices(step, micro, rank)
        return ids[idx], labels[idx]
    return make


def run(sections: dict) -> dict:
    import torch

    from .. import engine as eng
    from ..data import BatchPlan
    from ..ds_config import resolve_ds_config
    from ..flops import finetune_step_flops
    from ..hf_io import load_into, load_pretrained_state_dict, pretrained_model_config
    from ..packs import body_checksum
    from ..tasks import build_task_model, encode_pairs, encode_qa, load_examples, score, task_spec
    from ..tokenizer import load_tokenizer
    from ..trainer import Trainer

    cfg, train = sections["finetune"], sections["train"]
    spec = task_spec(cfg.task)
    if not cfg.model:
        raise ConfigError("--model is missing; fix: pass the primary model's Hugging Face directory")
    if not train.output_dir:
        raise ConfigError("--output_dir is missing; fix: pass --output_dir DIR")
    if cfg.dropout is not None and not 0.0 <= cfg.dropout < 1.0:
        raise ConfigError(f"--dropout {cfg.dropout}: not a dropout probability; fix: give a value in [0, 1)")
    examples = load_examples(spec, cfg.train_file, cfg.dataset_name, cfg.dataset_config, "train")
    eval_examples = load_examples(spec, cfg.eval_file) if cfg.eval_file else None
    tokenizer = load_tokenizer(cfg.tokenizer or cfg.model)
    model_cfg = pretrained_model_config(cfg.model)
    if len(tokenizer) != model_cfg.vocab_size:
        raise ConfigError(f"--tokenizer has {len(tokenizer)} tokens, the model {model_cfg.vocab_size}; fix: "
                          "use the model's own (source) tokenizer")
    if cfg.epochs is not None:
        train = dataclasses.replace(train, max_steps=max(1, round(cfg.epochs * len(examples)
                                                                  / train.global_batch_size)))
    ds, train = resolve_ds_config(train.deepspeed_config, train, world_from_env())
    resolved = to_dict({"finetune": cfg, "train": train})
    check_output_dir(train.output_dir, train.resume, resolved, must_match=("finetune",))

    if spec.kind == "pair":
        ids, labels = encode_pairs(examples, tokenizer, cfg.max_seq_length)
    else:
        ids, labels, _, _, _ = encode_qa(examples, tokenizer, cfg.max_seq_length, train=True)
    rank, world = eng.init_distributed()
    plan = BatchPlan(len(ids), train.global_batch_size, train.micro_batch_size, world, train.seed)
    if rank == 0:
        write_run_config(train.output_dir, resolved, tokenizer)
    eng.barrier()

    primary_sd = load_pretrained_state_dict(cfg.model)
    task_cfg = dataclasses.replace(model_cfg, mini_head=False, mini_layers=None)
    if cfg.dropout is not None:
        task_cfg = dataclasses.replace(task_cfg, hidden_dropout=cfg.dropout, attention_dropout=cfg.dropout)
    torch.manual_seed(train.seed)
    model = eng.build_under_zero(lambda: build_task_model(spec, task_cfg, cfg.pooling), ds)
    load_into(model, {k: v for k, v in primary_sd.items() if k.startswith("roberta.")},
              strict_prefixes=("roberta.",))
    for name, p in model.named_parameters():
        p.requires_grad = not name.startswith("roberta.embeddings.")
    engine, start, _ = eng.initialize_or_resume(model, ds, train.output_dir, train.resume)

    flops = finetune_step_flops(task_cfg, cfg.max_seq_length, train.global_batch_size,
                                len(spec.labels) if spec.kind == "pair" else 2)
    trainer = Trainer(engine, train, task_batches(ids, labels, plan, rank),
                      train.global_batch_size * cfg.max_seq_length, flops, train.output_dir, rank, world,
                      start_step=start)
    summary = trainer.run()
    state = eng.gathered_state_dict(engine.module)
    if rank == 0:
        meta = {"task": spec.name, "model_config": dataclasses.asdict(task_cfg),
                "source_model": os.path.abspath(cfg.model), "source_checksum": body_checksum(primary_sd),
                "max_seq_length": cfg.max_seq_length, "pooling": cfg.pooling, "steps": summary["steps"]}
        if eval_examples is not None:
            trained = build_task_model(spec, dataclasses.replace(task_cfg, hidden_dropout=0.0,
                                                                 attention_dropout=0.0), cfg.pooling)
            trained.load_state_dict(state)
            meta["source_score"] = score(spec, trained, tokenizer, eval_examples, cfg.max_seq_length)
            summary["source_score"] = meta["source_score"]
        save_finetuned(train.output_dir, state, meta)
        write_summary(train.output_dir, summary)
        print(f"done: {spec.name} fine-tuning, step {summary['steps']}, loss {summary['final_loss']:.4f}"
              + (f", source score {meta['source_score']}" if "source_score" in meta else ""), flush=True)
    eng.barrier()
    return summary


def main(argv=None) -> int:
    return stage_main("finetune", __doc__, SECTIONS, run, argv)


if __name__ == "__main__":
    from ..engine import exit_process

    exit_process(main())
