"""`mmadapt pipeline CONFIG.yaml`: steps 1-4 for a list of target languages and both step-2 paths.

A stage whose output is complete (its ``summary.json`` exists) is skipped, so an interrupted pipeline
resumes where it stopped and a new language reuses everything before step 2. The config:

    output_dir: runs/pipeline
    deepspeed_config: ds_configs/zero3_cpu.json
    nproc: 2
    common: {max_seq_length: 128, global_batch_size: 32}     # flags every stage gets
    source:
      model: runs/mj/hf               # a pretrained model with a MiniJoint head, or ...
      pretrain: {model: small, mini_layers: 2, train_files: [en.txt], tokenizer: tok-en, max_steps: 2000}
      minipost: {extract_layers: 2, new_layers: 2, train_files: [en.txt], max_steps: 500}  # optional
    task: {name: xnli, train_file: mnli.jsonl, eval_file: xnli.en.jsonl, args: {epochs: 2, lr: 2.0e-5}}
    # or one text per example: {name: classify, train_file: sib.en.jsonl, args: {num_labels: 7}}
    through: [mini, full]
    init: [normal]                    # step 2's starts, each a run: normal, overlap and/or focus
    step2: {max_steps: 2000, eval_every: 200, lr: 1.0e-3}
    languages:
      - {name: de, train_files: [de.txt], eval_files: [de.test.txt], task_eval_file: xnli.de.jsonl,
         vocab_size: 8000}

It writes ``summary.md`` and ``summary.json``: score and step-2 FLOPs per language and method. The YAML is
read into typed specs and every stage's settings are parsed by that stage's own parser before the first
stage runs (mmadapt/orchestrate.py): a misspelt or mistyped key fails at once, in one line.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Optional

from .artifacts import RunDir, has_tokenizer, read_finetune_meta, read_summary, write_json
from .errors import ConfigError, exit_status
from .orchestrate import Runs, StageCall

PIPELINE_MARKER = ".mmadapt-pipeline"


@dataclass
class SourceSpec:
    model: Optional[str] = None  # a pretrained model with a MiniJoint head, or ...
    pretrain: Optional[dict] = None  # ... launchers/minijoint.py's settings to pretrain one
    minipost: Optional[dict] = None  # launchers/minipost.py's settings: a MiniPost mini-model too


@dataclass
class TaskSpec:
    train_file: str
    name: str = "xnli"
    eval_file: Optional[str] = None
    args: dict = field(default_factory=dict)  # launchers/finetune.py's settings


@dataclass
class LanguageSpec:
    name: str
    train_files: list
    eval_files: list = field(default_factory=list)
    task_eval_file: Optional[str] = None
    tokenizer: Optional[str] = None  # a tokenizer directory; none: one is trained on train_files
    vocab_size: int = 8000


@dataclass
class PipelineConfig:
    output_dir: str
    source: SourceSpec
    task: TaskSpec
    languages: list  # of LanguageSpec
    deepspeed_config: str = "ds_configs/zero3_cpu.json"
    nproc: int = 1
    common: dict = field(default_factory=dict)  # settings every stage gets
    through: list = field(default_factory=lambda: ["mini", "full"])
    init: Optional[list] = None  # step 2's starts, each a run of its own; none: the stage's default
    step2: dict = field(default_factory=dict)  # launchers/adapt.py's settings


def _typed(cls, raw, where: str):
    """``raw`` (a YAML mapping) as ``cls``: unknown and missing keys refused, one line naming the key."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping, got {raw!r}; fix: give `key: value` lines")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - names)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; fix: use {', '.join(sorted(names))}")
    missing = sorted(f.name for f in dataclasses.fields(cls) if f.name not in raw
                     and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING)
    if missing:
        raise ConfigError(f"{where}: missing {missing}; fix: add them")
    return cls(**raw)


def load_config(path: str) -> PipelineConfig:
    """The YAML as a typed PipelineConfig, every stage's settings parsed by that stage's parser: a mistake
    anywhere fails now, in one line, before the first stage runs."""
    import yaml

    if not os.path.isfile(path):
        raise ConfigError(f"pipeline config {path}: not found; fix: give a YAML file (see `mmadapt pipeline -h`)")
    with open(path, encoding="utf-8") as fh:
        try:
            raw = yaml.safe_load(fh) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"pipeline config {path}: invalid YAML ({exc}); fix: correct it") from None
    where = f"pipeline config {path}"
    cfg = _typed(PipelineConfig, raw, where)
    cfg.source = _typed(SourceSpec, cfg.source or {}, f"{where}: source")
    cfg.task = _typed(TaskSpec, cfg.task, f"{where}: task")
    if not isinstance(cfg.languages, list) or not cfg.languages:
        raise ConfigError(f"{where}: languages is empty; fix: list at least one target language")
    cfg.languages = [_typed(LanguageSpec, lang, f"{where}: languages[{i}]") for i, lang in enumerate(cfg.languages)]
    if not (cfg.source.model or cfg.source.pretrain):
        raise ConfigError(f"{where}: source needs `model` or `pretrain`; fix: add one")
    from .tasks import TASKS

    if cfg.task.name not in TASKS:
        raise ConfigError(f"{where}: task name {cfg.task.name!r} is not one of {', '.join(TASKS)}; fix: pick one of them")
    bad = set(cfg.through) - {"mini", "full"}
    if bad:
        raise ConfigError(f"{where}: through {sorted(bad)}; fix: use mini and/or full")
    from .stages.adapt import INITS

    bad = set(cfg.init or []) - set(INITS)
    if bad:
        raise ConfigError(f"{where}: init {sorted(bad)}; fix: use {', '.join(INITS)}")
    if cfg.init is not None and "init" in (cfg.step2 or {}):
        raise ConfigError(f"{where}: init is given twice (top level and step2); fix: keep one")
    Pipeline(cfg, where).plan()  # every stage's settings through its own parser, nothing run
    from .outdir import check_claimable

    check_claimable(os.path.abspath(cfg.output_dir), PIPELINE_MARKER, "output_dir")
    return cfg


class Pipeline:
    def __init__(self, cfg: PipelineConfig, where: str = "pipeline config"):
        self.cfg = cfg
        self.where = where
        self.out = os.path.abspath(cfg.output_dir)
        self.runs = Runs(self.out, int(cfg.nproc))

    def path(self, *parts) -> str:
        return os.path.join(self.out, *parts)

    def call(self, name: str, stage: str, values: dict, key: str) -> StageCall:
        base = {"deepspeed_config": self.cfg.deepspeed_config, **(self.cfg.common or {})}
        return self.runs.call(name, stage, {**base, **values}, f"{self.where}: {key}")

    @property
    def model(self) -> str:
        return RunDir(self.path("pretrain")).hf if self.cfg.source.pretrain else self.cfg.source.model

    def tokenizer_dir(self, lang: LanguageSpec) -> str:
        return lang.tokenizer or self.path(f"tok-{lang.name}")

    def plan(self) -> dict:
        """Every stage call, in order: {"source": [...], "finetune": call, "step2": [(language, method, call)]}."""
        cfg, src = self.cfg, self.cfg.source
        source = []
        if src.pretrain:
            source.append(self.call("pretrain", "minijoint", src.pretrain, "source.pretrain"))
        if src.minipost:
            source.append(self.call("minipost", "minipost", {"model": self.model, **src.minipost}, "source.minipost"))
        task = cfg.task
        finetune = self.call("finetune", "finetune", {
            "task": task.name, "model": self.model, "train_files": [task.train_file],
            **({"eval_files": [task.eval_file]} if task.eval_file else {}), **(task.args or {})}, "task.args")
        step2 = []
        for lang in cfg.languages:
            for through in cfg.through:
                variants = [("", {})]
                if through == "mini" and src.minipost:
                    variants.append(("-minipost", {"mini_model": self.path("minipost")}))
                if cfg.init is not None:  # each start a run of its own; normal keeps the plain name
                    variants = [(suffix + ("" if init == "normal" else f"-{init}"), {**extra, "init": init})
                                for suffix, extra in variants for init in cfg.init]
                for suffix, extra in variants:
                    call = self.call(f"step2-{lang.name}-{through}{suffix}", "adapt", {
                        "model": self.model, "through": through, "tokenizer": self.tokenizer_dir(lang),
                        "train_files": lang.train_files, **({"eval_files": lang.eval_files} if lang.eval_files else {}),
                        **extra, **(cfg.step2 or {})}, "step2")
                    step2.append((lang, through + suffix, call))
        return {"source": source, "finetune": finetune, "step2": step2}

    def tokenizer(self, lang: LanguageSpec) -> str:
        from .tokenizer import train_tokenizer

        out = self.tokenizer_dir(lang)
        if not has_tokenizer(out):
            print(f"== tokenizer {lang.name}", flush=True)
            train_tokenizer(lang.train_files, int(lang.vocab_size), out)
        return out

    def evaluate(self, finetuned: str, pack: str, eval_file: str) -> dict:
        from .stages.evaluate import evaluate_pack
        from .artifacts import load_finetuned
        from .tasks import load_examples

        spec = load_finetuned(finetuned)[0]
        return evaluate_pack(finetuned, pack, load_examples(spec, eval_file))

    def run(self) -> list:
        from .outdir import claim_run_dir

        plan = self.plan()
        claim_run_dir(self.out, PIPELINE_MARKER, "output_dir")
        for call in plan["source"]:
            self.runs.run(call)
        finetuned = self.runs.run(plan["finetune"])
        rows = []
        source_score = read_finetune_meta(finetuned).get("source_score")
        for lang, method, call in plan["step2"]:
            self.tokenizer(lang)
            pack = self.runs.run(call)
            summary = read_summary(pack)
            row = {"language": lang.name, "method": method, "step2_steps": summary["steps"],
                   "step2_flops": summary["flops"]}
            if lang.task_eval_file:
                result = self.evaluate(finetuned, pack, lang.task_eval_file)
                row.update({k: v for k, v in result.items() if k not in ("pack", "examples")})
            rows.append(row)
        self.write_summary(rows, source_score)
        return rows

    def write_summary(self, rows: list, source_score) -> None:
        keys = sorted({k for r in rows for k in r} - {"language", "method"})
        lines = ["# mmadapt pipeline summary", ""]
        if source_score:
            lines += [f"Source-language score after fine-tuning: {source_score}", ""]
        lines += ["| language | method | " + " | ".join(keys) + " |", "|---" * (len(keys) + 2) + "|"]
        for r in rows:
            cells = [f"{r[k]:.4g}" if isinstance(r.get(k), float) else str(r.get(k, "")) for k in keys]
            lines.append(f"| {r['language']} | {r['method']} | " + " | ".join(cells) + " |")
        with open(self.path("summary.md"), "w", encoding="utf-8") as fh:
            fh.write("\n".join(lines) + "\n")
        # the pipeline's own results, by the stages' rule: written last, under a temporary name first
        write_json(RunDir(self.out).summary, {"source_score": source_score, "results": rows})
        print("\n".join(lines), flush=True)


def main(argv=None) -> int:
    import argparse

    from .config import ArgumentParser

    parser = ArgumentParser(prog="mmadapt pipeline", description=__doc__.split("\n\n")[0],
                            epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("config", help="pipeline YAML (its format below)")
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return exc.code
    return exit_status(lambda: Pipeline(load_config(args.config)).run())
