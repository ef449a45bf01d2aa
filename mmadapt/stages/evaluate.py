"""Step 4: zero-shot transfer. Swap a language pack into a fine-tuned model and score the task.

    deepspeed --num_gpus 1 launchers/evaluate.py --task xnli --model runs/xnli-en \
        --language_pack packs/de-mini packs/de-full --eval_files xnli.de.test.jsonl xnli.de.test.jsonl \
        --split test --output_dir runs/eval-de

Each ``--language_pack`` is scored on the ``--eval_files`` entry at the same position (one file for
all packs is fine); ``--language_pack source`` scores the fine-tuned model as it is, with the source
embeddings. Results go to ``results.json`` and ``results.md`` in ``--output_dir``: accuracy (pair
tasks), accuracy and macro-F1 (classify), exact match and F1 (mlqa), each a fraction (0..1). A classify
file's labels must lie in the model's 0..N-1 (its finetune.json's ``num_labels``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Optional

from ..config import _f
from ..errors import ConfigError

SOURCE = "source"


@dataclass
class EvaluateConfig:
    task: Optional[str] = _f(None, "xnli, pawsx, classify or mlqa (must match the fine-tuned model)")
    model: Optional[str] = _f(None, "a launchers/finetune.py --output_dir")
    language_packs: list = _f([SOURCE], "step-2 output directories, or `source`", nargs="+",
                              aliases=("--language_pack",))
    eval_files: list = _f([], "task files in the target languages (one, or one per pack)", nargs="+")
    dataset_name: Optional[str] = _f(None, "hub dataset instead of files (xnli, paws-x, mlqa)")
    dataset_config: Optional[str] = _f(None, "its config, e.g. de")
    split: str = _f("test", "split to score")
    embeddings: str = _f("best", "which of a pack's embeddings: best (by its step-2 selection) or last",
                         choices=("best", "last"))
    output_dir: Optional[str] = _f(None, "where results.json and results.md go (none: print only)")


SECTIONS = {"evaluate": EvaluateConfig}


def evaluate_pack(model_dir: str, pack: str, examples: list, which: str = "best") -> dict:
    """Score one pack (or the source embeddings) on examples; the model is loaded fresh each time."""
    from ..artifacts import RunDir, load_finetuned, load_pack
    from ..packs import check_pack_source, swap_language
    from ..tasks import score
    from ..tokenizer import load_tokenizer

    spec, model, tokenizer, meta = load_finetuned(model_dir)
    label = SOURCE
    if pack != SOURCE:
        tensors, pack_meta = load_pack(pack, which)
        check_pack_source(pack_meta, meta["source_checksum"], f"--model {model_dir}")
        swap_language(model, tensors)
        tokenizer = load_tokenizer(RunDir(pack).tokenizer)
        label = f"{os.path.basename(os.path.normpath(pack))} ({pack_meta.get('through', '?')})"
    return {"pack": label, **score(spec, model, tokenizer, examples, meta["max_seq_length"])}


def markdown_table(rows: list) -> str:
    keys = [k for k in rows[0] if k != "pack"]
    lines = ["| pack | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
    for r in rows:
        cells = [f"{r[k]:.4f}" if isinstance(r[k], float) else str(r[k]) for k in keys]
        lines.append(f"| {r['pack']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def run(sections: dict) -> list:
    from .. import engine as eng
    from ..artifacts import RESULTS_FILE, RESULTS_MD, load_finetuned, write_json, write_text
    from ..tasks import load_examples, task_spec

    cfg = sections["evaluate"]
    if not cfg.model:
        raise ConfigError("--model is missing; fix: pass a fine-tuned directory")
    spec, _, _, meta = load_finetuned(cfg.model)
    if cfg.task and task_spec(cfg.task).name != spec.name:
        raise ConfigError(f"--task {cfg.task}: {cfg.model} was fine-tuned for {spec.name}; fix: match them")
    files = cfg.eval_files or [None]
    if len(files) not in (1, len(cfg.language_packs)):
        raise ConfigError(f"{len(files)} --eval_files for {len(cfg.language_packs)} --language_pack; fix: give "
                          "one file, or one per pack")
    datasets_ = [load_examples(spec, f, cfg.dataset_name, cfg.dataset_config, cfg.split) for f in files]
    rank, _ = eng.init_distributed()
    rows = []
    if rank == 0:  # scoring is cheap next to training: one rank does it, the others wait
        for i, pack in enumerate(cfg.language_packs):
            rows.append(evaluate_pack(cfg.model, pack, datasets_[i % len(datasets_)], cfg.embeddings))
        table = markdown_table(rows)
        print(table, flush=True)
        if cfg.output_dir:
            os.makedirs(cfg.output_dir, exist_ok=True)
            write_json(os.path.join(cfg.output_dir, RESULTS_FILE), {"task": spec.name, "split": cfg.split,
                                                                     "results": rows})
            write_text(os.path.join(cfg.output_dir, RESULTS_MD), f"# {spec.name} ({cfg.split})\n\n" + table)
    eng.barrier()
    return rows
