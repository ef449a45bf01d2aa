"""What lives on disk between the stages: names, writers and readers, in one place low in the house.

``RunDir`` is the typed handle on any of them; the functions below read and write through it.

* a run directory (every training stage): ``run_config.json`` (the resolved flags), ``metrics.jsonl``,
  ``eval.jsonl``, ``checkpoints/``, ``tokenizer/`` and, written last, ``summary.json``;
* a fine-tuned task model (step 3): ``model.safetensors`` and ``finetune.json``;
* a MiniPost mini-model (step 1b): ``mini_model.safetensors`` and ``minipost.json``;
* a language pack (step 2): ``embeddings.safetensors`` (last), ``best_embeddings.safetensors`` (chosen
  by the run's selection figure), ``tokenizer/`` and ``pack.json``;
* a generated language pair (``PairDir``), and the reports at the top of an orchestrated run (the demo's
  ``report.json``, realtext.py's ``realtext.json``, ...), which other commands read back.

Nothing here imports a stage: stages, evaluators, the pipeline and the demo all read through this module.
Every file is written under a temporary name and renamed into place.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil

from .errors import ConfigError

RUN_CONFIG = "run_config.json"
SUMMARY_FILE = "summary.json"
METRICS_FILE = "metrics.jsonl"
EVAL_FILE = "eval.jsonl"
CHECKPOINTS = "checkpoints"
FINETUNE_META = "finetune.json"
FINETUNE_WEIGHTS = "model.safetensors"
MINIPOST_META = "minipost.json"
MINIPOST_WEIGHTS = "mini_model.safetensors"
EMBEDDINGS_FILE = "embeddings.safetensors"
BEST_EMBEDDINGS_FILE = "best_embeddings.safetensors"
PACK_META = "pack.json"
TOKENIZER_DIR = "tokenizer"  # every run's tokenizer, a pack's target tokenizer
HF_DIR = "hf"  # pretraining's Hugging Face export
TOKENIZER_FILE = "tokenizer.json"  # the file that makes a directory a saved tokenizer
LOGS_DIR = "logs"  # an orchestrated run's stage logs: logs/<stage>.log
STAGE_SECONDS = "stage_seconds.json"  # in logs/: each stage's launch seconds, summed over its segments
PROFILE_FILE, PROFILE_TABLE = "profile.json", "profile.txt"  # a run with --profile_step: seconds by op group
RESULTS_FILE, RESULTS_MD = "results.json", "results.md"  # launchers/evaluate.py --output_dir
# the reports at the top of an orchestrated run (`mmadapt demo`, benchmarks/realtext.py, starts.py)
DATA_DIR = "data"  # the demo's generated language pair (a PairDir)
DEMO_TOKENIZER = "tok-{}"  # the demo's tokenizer of each side: tok-source, tok-target
DEMO_REPORT, DEMO_REPORT_MD = "report.json", "report.md"
INSTANCES_REPORT, INSTANCES_REPORT_MD = "instances.json", "instances.md"
REALTEXT_REPORT, REALTEXT_REPORT_MD, REALTEXT_PLOT = "realtext.json", "realtext.md", "realtext.png"
STARTS_REPORT, STARTS_REPORT_MD, STARTS_PLOT = "starts.json", "starts.md", "starts.png"


@dataclasses.dataclass(frozen=True)
class RunDir:
    """A typed handle on a stage's output directory: every file a stage writes, by what it is.

    One class serves the four kinds (pretraining run, MiniPost mini-model, language pack, fine-tuned
    model): they share the run files, and each reader below checks that the kind's own files are there."""

    path: str

    def join(self, *parts: str) -> str:
        return os.path.join(self.path, *parts)

    # every training stage
    run_config = property(lambda self: self.join(RUN_CONFIG))
    summary = property(lambda self: self.join(SUMMARY_FILE))
    metrics = property(lambda self: self.join(METRICS_FILE))
    eval_log = property(lambda self: self.join(EVAL_FILE))
    checkpoints = property(lambda self: self.join(CHECKPOINTS))
    tokenizer = property(lambda self: self.join(TOKENIZER_DIR))
    profile = property(lambda self: self.join(PROFILE_FILE))
    # pretraining
    hf = property(lambda self: self.join(HF_DIR))
    # language pack, fine-tuned model, MiniPost mini-model
    pack_meta = property(lambda self: self.join(PACK_META))
    finetune_meta = property(lambda self: self.join(FINETUNE_META))
    minipost_meta = property(lambda self: self.join(MINIPOST_META))

    def complete(self) -> bool:
        """summary.json is a stage's last file: its presence marks the stage complete."""
        return os.path.isfile(self.summary)

    def read_summary(self) -> dict:
        return read_json(self.summary)

    def read_eval(self) -> list:
        return read_jsonl(self.eval_log)

    def read_metrics(self) -> list:
        return read_jsonl(self.metrics)


@dataclasses.dataclass(frozen=True)
class PairDir:
    """A generated language pair (``mmadapt.synthetic`` writes it, the demo and its analysis read it): text
    per side and split, test and dev translation pairs, the word dictionary, task splits and ``meta.json``."""

    path: str

    META, DICTIONARY, LEMMA_DICTIONARY = "meta.json", "dictionary.tsv", "dictionary.lemmas.tsv"
    TEXT_SPLITS = (("source", "train"), ("source", "test"), ("target", "train"), ("target", "test"))
    TASK_SPLITS = (("source", "train"), ("source", "dev"), ("source", "test"), ("target", "dev"), ("target", "test"))

    @staticmethod
    def text_name(side: str, split: str) -> str:
        return f"{side}.{split}.txt"

    @staticmethod
    def task_name(side: str, split: str) -> str:
        return f"task.{side}.{split}.jsonl"

    @staticmethod
    def parallel_name(split: str = "test") -> str:
        return "parallel.tsv" if split == "test" else f"parallel.{split}.tsv"

    @classmethod
    def files(cls) -> tuple:
        """Every file of a pair, in the generator's order."""
        return (*(cls.text_name(*s) for s in cls.TEXT_SPLITS), cls.parallel_name("test"), cls.parallel_name("dev"),
                cls.DICTIONARY, cls.LEMMA_DICTIONARY, *(cls.task_name(*s) for s in cls.TASK_SPLITS), cls.META)

    def text(self, side: str, split: str) -> str:
        return os.path.join(self.path, self.text_name(side, split))

    def task(self, side: str, split: str) -> str:
        return os.path.join(self.path, self.task_name(side, split))

    def parallel(self, split: str = "test") -> str:
        return os.path.join(self.path, self.parallel_name(split))

    dictionary = property(lambda self: os.path.join(self.path, self.DICTIONARY))
    meta = property(lambda self: os.path.join(self.path, self.META))


@dataclasses.dataclass(frozen=True)
class DemoDir:
    """One ``mmadapt demo`` instance's directory: its language pair, tokenizers, stage runs and reports.
    The stage names are the orchestrator's (``Runs``): each stage's run directory is ``<path>/<name>``."""

    path: str

    PRETRAIN, MINIPOST, CACHE = "pretrain", "minipost", "cache"
    # what a rerun may replace: these names, and those starting with a prefix or ending in .png
    ENTRIES = (DATA_DIR, *(DEMO_TOKENIZER.format(side) for side in ("source", "target")), PRETRAIN, MINIPOST,
               LOGS_DIR, CACHE, DEMO_REPORT_MD, DEMO_REPORT, INSTANCES_REPORT_MD, INSTANCES_REPORT)
    PREFIXES = ("finetune-", "step2-", "seed-")

    @staticmethod
    def tokenizer_name(side: str) -> str:
        return DEMO_TOKENIZER.format(side)

    @staticmethod
    def finetune_name(seed: int) -> str:
        return f"finetune-{seed}"

    @staticmethod
    def step2_name(path: str) -> str:
        return f"step2-{path}"

    @staticmethod
    def instance_name(seed: int) -> str:
        return f"seed-{seed}"

    def join(self, *parts: str) -> str:
        return os.path.join(self.path, *parts)

    def tokenizer(self, side: str) -> str:
        return self.join(self.tokenizer_name(side))

    def step2(self, path: str) -> RunDir:
        return RunDir(self.join(self.step2_name(path)))

    data = property(lambda self: PairDir(self.join(DATA_DIR)))
    pretrain = property(lambda self: RunDir(self.join(self.PRETRAIN)))
    minipost = property(lambda self: RunDir(self.join(self.MINIPOST)))
    cache = property(lambda self: self.join(self.CACHE))
    report = property(lambda self: self.join(DEMO_REPORT))
    report_md = property(lambda self: self.join(DEMO_REPORT_MD))


def has_tokenizer(path: str) -> bool:
    return os.path.isfile(os.path.join(path, TOKENIZER_FILE))


# ------------------------------------------------------------------------------------ plain files
def write_json(path: str, data: dict) -> None:
    write_text(path, json.dumps(data, indent=2))


def write_text(path: str, text: str) -> None:
    """A file in one piece (written aside, then renamed): never a half-written file under its name."""
    with open(path + ".tmp", "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(path + ".tmp", path)


def read_json(path: str) -> dict:
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def save_tensors(path: str, tensors: dict) -> None:
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in tensors.items()}, path + ".tmp")
    os.replace(path + ".tmp", path)


# ------------------------------------------------------------------------------------ run directory
def write_run_config(output_dir: str, resolved: dict, tokenizer) -> None:
    os.makedirs(output_dir, exist_ok=True)
    write_json(os.path.join(output_dir, RUN_CONFIG), resolved)
    tokenizer.save_pretrained(RunDir(output_dir).tokenizer)
    print(json.dumps(resolved, indent=2), flush=True)


def read_run_config(output_dir: str) -> dict:
    return read_json(RunDir(output_dir).run_config)


def write_summary(output_dir: str, summary: dict) -> None:
    """summary.json is written last: its presence marks the stage complete (see ``complete``)."""
    write_json(RunDir(output_dir).summary, summary)


def read_summary(output_dir: str) -> dict:
    return RunDir(output_dir).read_summary()


def complete(stage_dir: str) -> bool:
    """A stage is complete once it wrote summary.json, its last file."""
    return RunDir(stage_dir).complete()


def stage_log(run_dir: str, name: str) -> str:
    return os.path.join(run_dir, LOGS_DIR, f"{name}.log")


def recorded_stage_seconds(run_dir: str) -> dict:
    """{stage: {"seconds": launch seconds summed over its segments, "segments": n}} of an orchestrated run."""
    path = os.path.join(run_dir, LOGS_DIR, STAGE_SECONDS)
    if not os.path.isfile(path):
        return {}
    try:
        ledger = read_json(path)
    except ValueError:
        ledger = None
    if not (isinstance(ledger, dict) and all(
            isinstance(v, dict) and isinstance(v.get("seconds"), (int, float)) and isinstance(v.get("segments"), int)
            for v in ledger.values())):
        raise ConfigError(f"{path}: not a record of stage seconds; fix: delete it (stages kept from before "
                          "then report no seconds)")
    return ledger


def record_stage_seconds(run_dir: str, name: str, seconds: float, resumed: bool) -> float:
    """Add a finished launch's seconds to its stage's record (a fresh start replaces it); returns the total.
    A segment killed together with its orchestrator never returns here and is not counted."""
    ledger = recorded_stage_seconds(run_dir)
    before = ledger.get(name, {"seconds": 0.0, "segments": 0}) if resumed else {"seconds": 0.0, "segments": 0}
    ledger[name] = {"seconds": before["seconds"] + seconds, "segments": before["segments"] + 1}
    os.makedirs(os.path.join(run_dir, LOGS_DIR), exist_ok=True)
    write_json(os.path.join(run_dir, LOGS_DIR, STAGE_SECONDS), ledger)
    return ledger[name]["seconds"]


def read_jsonl(path: str) -> list:
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def model_dir(path: str) -> str:
    """``--model`` may name a pretraining run directory: its Hugging Face export ``hf/`` is the model."""
    hf = RunDir(path).hf
    if os.path.isdir(path) and not os.path.isfile(os.path.join(path, "config.json")) \
            and os.path.isfile(os.path.join(hf, "config.json")):
        return hf
    return path


# ------------------------------------------------------------------------------- fine-tuned model
def save_finetuned(out_dir: str, state: dict, meta: dict) -> None:
    save_tensors(os.path.join(out_dir, FINETUNE_WEIGHTS), state)
    write_json(os.path.join(out_dir, FINETUNE_META), meta)


def read_finetune_meta(path: str, flag: str = "--model") -> dict:
    meta_path = os.path.join(path, FINETUNE_META)
    if not os.path.isfile(meta_path):
        raise ConfigError(f"{flag} {path}: no {FINETUNE_META}; fix: point at a launchers/finetune.py --output_dir")
    return read_json(meta_path)


def load_finetuned(path: str, flag: str = "--model"):
    """(task spec, model in eval mode, source tokenizer, meta) of a fine-tuned directory."""
    from safetensors.torch import load_file

    from .config import ModelConfig
    from .tasks import build_task_model, spec_of
    from .tokenizer import load_tokenizer

    meta = read_finetune_meta(path, flag)
    spec = spec_of(meta)
    cfg = dataclasses.replace(ModelConfig(**meta["model_config"]), hidden_dropout=0.0, attention_dropout=0.0)
    model = build_task_model(spec, cfg, meta.get("pooling", "cls"))
    model.load_state_dict(load_file(os.path.join(path, FINETUNE_WEIGHTS)))
    return spec, model.eval(), load_tokenizer(RunDir(path).tokenizer), meta


# ------------------------------------------------------------------------------ MiniPost mini-model
def save_minipost(out_dir: str, state: dict, meta: dict) -> None:
    save_tensors(os.path.join(out_dir, MINIPOST_WEIGHTS), state)
    write_json(os.path.join(out_dir, MINIPOST_META), meta)


def read_minipost_meta(path: str) -> dict:
    meta_path = os.path.join(path, MINIPOST_META)
    if not os.path.isfile(meta_path):
        raise ConfigError(f"--mini_model {path}: no {MINIPOST_META}; fix: point at a launchers/minipost.py "
                          "--output_dir")
    return read_json(meta_path)


def load_minipost(path: str) -> tuple[dict, dict]:
    """(state dict in MiniModel names, meta) of a MiniPost directory."""
    from safetensors.torch import load_file

    meta = read_minipost_meta(path)
    return load_file(os.path.join(path, MINIPOST_WEIGHTS)), meta


# ---------------------------------------------------------------------------------- language pack
def save_pack(out_dir: str, embeddings, head_bias, tokenizer_dir: str, meta: dict,
              filename: str = EMBEDDINGS_FILE) -> None:
    os.makedirs(out_dir, exist_ok=True)
    save_tensors(os.path.join(out_dir, filename), {"word_embeddings": embeddings, "head_bias": head_bias})
    tok_dst = RunDir(out_dir).tokenizer
    if os.path.abspath(tokenizer_dir) != os.path.abspath(tok_dst) and not os.path.isdir(tok_dst):
        shutil.copytree(tokenizer_dir, tok_dst)
    write_json(os.path.join(out_dir, PACK_META), meta)


def load_pack(pack_dir: str, which: str = "best") -> tuple[dict, dict]:
    """(tensors, meta) of a pack; ``which`` is "best" (by the run's selection figure) or "last"."""
    from safetensors.torch import load_file

    meta_path = os.path.join(pack_dir, PACK_META)
    if not os.path.isfile(meta_path):
        raise ConfigError(f"--language_pack {pack_dir}: no {PACK_META}; fix: point at a step-2 --output_dir")
    name = BEST_EMBEDDINGS_FILE if which == "best" and os.path.isfile(
        os.path.join(pack_dir, BEST_EMBEDDINGS_FILE)) else EMBEDDINGS_FILE
    return load_file(os.path.join(pack_dir, name)), read_json(meta_path)
