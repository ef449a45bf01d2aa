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

It writes ``summary.md`` and ``summary.json``: score and step-2 FLOPs per language and method.
"""

from __future__ import annotations

import os

from .artifacts import RunDir, has_tokenizer, read_finetune_meta, read_summary, write_json
from .errors import ConfigError, exit_status
from .launch import run_stage

REQUIRED = {"output_dir", "source", "task", "languages"}
PIPELINE_MARKER = ".mmadapt-pipeline"


def _flags(d: dict) -> list:
    """A YAML mapping as stage flags: ``key: true`` -> --key, ``key: false`` -> --no_key (every switch has
    both), lists -> --key a b. What no flag can say (null, a nested mapping) is refused, not dropped."""
    out = []
    for key, value in (d or {}).items():
        if value is True:
            out.append(f"--{key}")
        elif value is False:
            out.append(f"--no_{key}")
        elif value is None or isinstance(value, dict):
            raise ConfigError(f"pipeline config: `{key}: {value!r}` cannot be passed as a flag; fix: give a "
                              "value, or remove the key to keep the stage's default")
        elif isinstance(value, list):
            out += [f"--{key}", *value]
        else:
            out += [f"--{key}", value]
    return out


def load_config(path: str) -> dict:
    import yaml

    if not os.path.isfile(path):
        raise ConfigError(f"pipeline config {path}: not found; fix: give a YAML file (see `mmadapt pipeline -h`)")
    with open(path, encoding="utf-8") as fh:
        try:
            cfg = yaml.safe_load(fh) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"pipeline config {path}: invalid YAML ({exc}); fix: correct it") from None
    missing = REQUIRED - set(cfg)
    if missing:
        raise ConfigError(f"pipeline config {path}: missing {sorted(missing)}; fix: add them")
    src = cfg["source"]
    if not (src.get("model") or src.get("pretrain")):
        raise ConfigError(f"pipeline config {path}: source needs `model` or `pretrain`; fix: add one")
    for i, lang in enumerate(cfg["languages"]):
        for key in ("name", "train_files"):
            if key not in lang:
                raise ConfigError(f"pipeline config {path}: languages[{i}] lacks `{key}`; fix: add it")
    task = cfg["task"]
    if not isinstance(task, dict) or "train_file" not in task:
        raise ConfigError(f"pipeline config {path}: task lacks `train_file`; fix: add it")
    from .tasks import TASKS

    if task.get("name", "xnli") not in TASKS:
        raise ConfigError(f"pipeline config {path}: task name {task['name']!r} is not one of {', '.join(TASKS)}; "
                          "fix: pick one of them")
    bad = set(cfg.get("through", ["mini", "full"])) - {"mini", "full"}
    if bad:
        raise ConfigError(f"pipeline config {path}: through {sorted(bad)}; fix: use mini and/or full")
    from .stages.adapt import INITS

    bad = set(cfg.get("init", [])) - set(INITS)
    if bad:
        raise ConfigError(f"pipeline config {path}: init {sorted(bad)}; fix: use {', '.join(INITS)}")
    if "init" in cfg and "init" in (cfg.get("step2") or {}):
        raise ConfigError(f"pipeline config {path}: init is given twice (top level and step2); fix: keep one")
    # Every flag mapping is checked now, not when its stage comes (after earlier stages ran).
    for flags in (cfg.get("common"), src.get("pretrain"), src.get("minipost"), cfg["task"].get("args"),
                  cfg.get("step2")):
        _flags(flags)
    from .outdir import check_claimable

    check_claimable(os.path.abspath(cfg["output_dir"]), PIPELINE_MARKER, "output_dir")
    return cfg


class Pipeline:
    def __init__(self, cfg: dict):
        self.cfg = cfg
        self.out = os.path.abspath(cfg["output_dir"])
        self.nproc = int(cfg.get("nproc", 1))
        self.ds = ["--deepspeed_config", cfg.get("deepspeed_config", "ds_configs/zero3_cpu.json")]
        self.common = _flags(cfg.get("common"))

    def path(self, *parts) -> str:
        return os.path.join(self.out, *parts)

    def stage(self, name: str, script: str, args: list) -> str:
        run_stage(self.out, name, script, self.ds + self.common + args + ["--output_dir", self.path(name)], self.nproc)
        return self.path(name)

    def source_model(self) -> tuple[str, dict]:
        src = self.cfg["source"]
        if src.get("pretrain"):
            model = RunDir(self.stage("pretrain", "minijoint.py", _flags(src["pretrain"]))).hf
        else:
            model = src["model"]
        mini = {}
        if src.get("minipost"):
            mini["minipost"] = self.stage("minipost", "minipost.py",
                                          ["--model", model] + _flags(src["minipost"]))
        return model, mini

    def tokenizer(self, lang: dict) -> str:
        from .tokenizer import train_tokenizer

        if lang.get("tokenizer"):
            return lang["tokenizer"]
        out = self.path(f"tok-{lang['name']}")
        if not has_tokenizer(out):
            print(f"== tokenizer {lang['name']}", flush=True)
            train_tokenizer(lang["train_files"], int(lang.get("vocab_size", 8000)), out)
        return out

    def evaluate(self, finetuned: str, pack: str, eval_file: str) -> dict:
        from .stages.evaluate import evaluate_pack
        from .artifacts import load_finetuned
        from .tasks import load_examples

        spec = load_finetuned(finetuned)[0]
        return evaluate_pack(finetuned, pack, load_examples(spec, eval_file))

    def run(self) -> list:
        from .outdir import claim_run_dir

        claim_run_dir(self.out, PIPELINE_MARKER, "output_dir")
        model, minis = self.source_model()
        task = self.cfg["task"]
        finetuned = self.stage("finetune", "finetune.py", [
            "--task", task.get("name", "xnli"), "--model", model, "--train_files", task["train_file"],
            *(["--eval_files", task["eval_file"]] if task.get("eval_file") else []), *_flags(task.get("args"))])
        rows = []
        source_score = read_finetune_meta(finetuned).get("source_score")
        for lang in self.cfg["languages"]:
            tok = self.tokenizer(lang)
            for through in self.cfg.get("through", ["mini", "full"]):
                variants = [("", [])]
                if through == "mini" and "minipost" in minis:
                    variants.append(("-minipost", ["--mini_model", minis["minipost"]]))
                if "init" in self.cfg:  # each start a run of its own; normal keeps the plain name
                    variants = [(suffix + ("" if init == "normal" else f"-{init}"), extra + ["--init", init])
                                for suffix, extra in variants for init in self.cfg["init"]]
                for suffix, extra in variants:
                    name = f"step2-{lang['name']}-{through}{suffix}"
                    evals = ["--eval_files", *lang["eval_files"]] if lang.get("eval_files") else []
                    pack = self.stage(name, "adapt.py", [
                        "--model", model, "--through", through, "--tokenizer", tok,
                        "--train_files", *lang["train_files"], *evals, *extra,
                        *_flags(self.cfg.get("step2"))])
                    summary = read_summary(pack)
                    row = {"language": lang["name"], "method": through + suffix, "step2_steps": summary["steps"],
                           "step2_flops": summary["flops"]}
                    if lang.get("task_eval_file"):
                        result = self.evaluate(finetuned, pack, lang["task_eval_file"])
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
