"""What every training stage does the same way: validation, the output directory, the entry wrapper."""

from __future__ import annotations

import json
import os
import sys
from typing import Callable

from ..config import build_parser, parse_sections
from ..errors import ConfigError

RUN_CONFIG = "run_config.json"


def rank_from_env() -> int:
    return int(os.environ.get("RANK", os.environ.get("OMPI_COMM_WORLD_RANK", 0)))


def world_from_env() -> int:
    return int(os.environ.get("WORLD_SIZE", os.environ.get("OMPI_COMM_WORLD_SIZE", 1)))


def check_train_inputs(data_cfg, train) -> None:
    from ..data import check_text_file

    if not train.output_dir:
        raise ConfigError("--output_dir is missing; fix: pass --output_dir DIR")
    if not data_cfg.train_files and not data_cfg.dataset_name:
        raise ConfigError("no training text; fix: pass --train_files FILE [FILE ...] or --dataset_name")
    if not data_cfg.tokenizer:
        raise ConfigError("--tokenizer is missing; fix: pass a directory from `mmadapt tokenizer train`")
    for path in data_cfg.train_files:
        check_text_file(path, data_cfg.text_field)
    if train.max_steps < 1 or train.log_every < 1:
        raise ConfigError(f"--max_steps {train.max_steps} / --log_every {train.log_every} must be >= 1; "
                          "fix: give positive values")


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
    if not os.path.isfile(saved_path) or latest_tag(os.path.join(output_dir, "checkpoints")) is None:
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


def write_run_config(output_dir: str, resolved: dict, tokenizer) -> None:
    os.makedirs(output_dir, exist_ok=True)
    with open(os.path.join(output_dir, RUN_CONFIG), "w", encoding="utf-8") as fh:
        json.dump(resolved, fh, indent=2)
    tokenizer.save_pretrained(os.path.join(output_dir, "tokenizer"))
    print(json.dumps(resolved, indent=2), flush=True)


def write_summary(output_dir: str, summary: dict) -> None:
    """summary.json is written last: its presence marks the stage complete (mmadapt/launch.py)."""
    tmp = os.path.join(output_dir, "summary.json.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(summary, fh, indent=2)
    os.replace(tmp, os.path.join(output_dir, "summary.json"))


def stage_main(prog: str, doc: str, sections: dict, run: Callable[[dict], object], argv=None) -> int:
    """Parse, run, and turn a ConfigError into one line on stderr and exit status 2."""
    from ..engine import close_distributed

    parser = build_parser(prog, doc.split("\n\n")[0], sections)
    try:
        run(parse_sections(parser, argv, sections))
        return 0
    except ConfigError as exc:
        if rank_from_env() == 0:
            print(f"error: {exc}", file=sys.stderr, flush=True)
        return 2
    finally:
        close_distributed()
