"""The ``mmadapt`` command: tokenizer training, environment info, export, demo data.

Training itself runs through the launchers (``deepspeed launchers/minijoint.py ...``) so that the
DeepSpeed launcher owns process placement; this command covers the single-process tools around it.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from typing import Optional

from .config import ArgumentParser, _f, add_dataclass_args
from .errors import ConfigError


@dataclass
class TokenizerTrainConfig:
    train_files: list = _f([], "text to train on: .txt (a text a line) or .jsonl files", aliases=("--input",))
    vocab_size: int = _f(8000, "final size, special tokens included")
    whole_words: bool = _f(False, "whole words (most frequent first) plus single characters instead of "
                           "sentencepiece unigram pieces: for languages with few word forms, such as the "
                           "synthetic benchmark")
    output_dir: Optional[str] = _f(None, "directory to write the Hugging Face tokenizer to (an earlier "
                                   "tokenizer there is replaced; anything else is refused)", aliases=("--output",))
    text_field: str = _f("text", "field holding the text in jsonl files")
    seed: int = _f(0, "sentencepiece's seed")


def cmd_tokenizer_train(cfg: TokenizerTrainConfig) -> None:
    from .tokenizer import train_tokenizer

    if not cfg.train_files or not cfg.output_dir:
        raise ConfigError("--train_files and --output_dir are required; fix: pass both")
    tok = train_tokenizer(cfg.train_files, cfg.vocab_size, cfg.output_dir, cfg.text_field, seed=cfg.seed,
                          whole_words=cfg.whole_words)
    note = "" if len(tok) == cfg.vocab_size else \
        f" (asked for {cfg.vocab_size}: the text has fewer distinct pieces)"
    print(f"tokenizer: {len(tok)} tokens{note} -> {cfg.output_dir}")


@dataclass
class NoFlags:
    pass


def cmd_info(_) -> None:
    import deepspeed
    import torch
    import transformers
    from deepspeed.accelerator import get_accelerator

    acc = get_accelerator()
    info = {
        "mmadapt": __import__("mmadapt").__version__,
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "deepspeed": deepspeed.__version__,
        "transformers": transformers.__version__,
        "accelerator": acc.device_name(),
        "communication_backend": acc.communication_backend_name(),
        "bf16_supported": bool(acc.is_bf16_supported()),
        "devices": acc.device_count() if acc.device_name() != "cpu" else 0,
        "cpu_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "deepspeed_ops": _ds_ops(),
    }
    print(json.dumps(info, indent=2))


def _ds_ops() -> dict:
    """Each DeepSpeed op this machine can build, and whether it is already built (JIT cache)."""
    from deepspeed.ops.op_builder import CPUAdamBuilder, FusedAdamBuilder
    from deepspeed.accelerator import get_accelerator

    out = {}
    for builder in (FusedAdamBuilder(), CPUAdamBuilder()):
        try:
            out[builder.name] = "compatible" if builder.is_compatible(verbose=False) else "incompatible"
        except Exception as exc:  # noqa: BLE001 - a broken toolchain is information here
            out[builder.name] = f"error: {exc}"
    out["accelerator_ops"] = get_accelerator().op_builder_dir()
    return out


@dataclass
class ExportConfig:
    run_dir: Optional[str] = _f(None, "a pretraining --output_dir: its latest checkpoint becomes a Hugging Face MLM "
                                "(with --language_pack: the target-language MLM)")
    finetuned: Optional[str] = _f(None, "a launchers/finetune.py --output_dir: with --language_pack, the adapted "
                                  "task model for AutoModelForSequenceClassification (pair and classify tasks) or "
                                  "AutoModelForQuestionAnswering (mlqa)")
    language_pack: Optional[str] = _f(None, "a step-2 --output_dir whose embeddings and tokenizer go in")
    embeddings: str = _f("best", "which of the pack's embeddings: best or last", choices=("best", "last"))
    output_dir: Optional[str] = _f(None, "directory to write (an earlier export there is replaced; anything "
                                   "else is refused)", aliases=("--output",))
    tag: Optional[str] = _f(None, "checkpoint tag (none: the latest)")


def cmd_export(cfg: ExportConfig) -> None:
    from . import engine as eng
    from .artifacts import RUN_CONFIG, RunDir, read_run_config
    from .config import ModelConfig
    from .hf_io import export_adapted_mlm, export_adapted_task_model, export_hf

    if not cfg.output_dir or bool(cfg.run_dir) == bool(cfg.finetuned):
        raise ConfigError("export needs --output_dir and one of --run_dir or --finetuned; fix: pass them")
    if cfg.finetuned:
        if not cfg.language_pack:
            raise ConfigError("--finetuned needs --language_pack (the fine-tuned model as it is lives in its "
                              "directory already); fix: add it")
        out = export_adapted_task_model(cfg.finetuned, cfg.language_pack, cfg.output_dir, cfg.embeddings)
        print(f"exported {cfg.finetuned} with {cfg.language_pack} -> {out}")
        return
    if cfg.language_pack:  # the run's Hugging Face export (or any mmadapt/XLM-R MLM directory)
        from .artifacts import model_dir

        out = export_adapted_mlm(model_dir(cfg.run_dir), cfg.language_pack, cfg.output_dir, cfg.embeddings)
        print(f"exported {cfg.run_dir} with {cfg.language_pack} -> {out}")
        return
    run = RunDir(cfg.run_dir)
    if not os.path.isfile(run.run_config):
        raise ConfigError(f"--run_dir {cfg.run_dir}: no {RUN_CONFIG}; fix: point at a training --output_dir")
    resolved = read_run_config(cfg.run_dir)
    ckpt = run.checkpoints
    tag = cfg.tag or eng.latest_tag(ckpt)
    if tag is None or not os.path.isdir(os.path.join(ckpt, tag)):
        raise ConfigError(f"{ckpt}: no complete checkpoint {tag or ''}; fix: train first or pass --tag")
    sd = eng.consolidated_state_dict(ckpt, tag)
    out = export_hf(sd, ModelConfig(**resolved["model"]), cfg.output_dir, run.tokenizer)
    print(f"exported {tag} -> {out}")


@dataclass
class DemoTextConfig:
    output_dir: Optional[str] = _f(None, "file to write", aliases=("--output",))
    sentences: int = _f(20000, "sentences to write")
    seed: int = _f(0, "the generator's seed")


def cmd_demo_text(cfg: DemoTextConfig) -> None:
    from .textgen import write_corpus

    if not cfg.output_dir:
        raise ConfigError("--output_dir is required; fix: pass the file to write")
    n = write_corpus(cfg.output_dir, cfg.sentences, cfg.seed)
    print(f"wrote {n} sentences -> {cfg.output_dir}")


# name -> (help, config, function); `demo` and `pipeline` have parsers of their own
COMMANDS = {
    "tokenizer train": ("train a sentencepiece unigram (or whole-word) tokenizer in XLM-R's layout",
                        TokenizerTrainConfig, cmd_tokenizer_train),
    "info": ("versions, accelerator, DeepSpeed ops", NoFlags, cmd_info),
    "export": ("a Hugging Face directory: a run's checkpoint, or an adapted model (--language_pack)",
               ExportConfig, cmd_export),
    "demo-text": ("write the built-in generated English-like text", DemoTextConfig, cmd_demo_text),
}


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog="mmadapt", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True, parser_class=ArgumentParser)
    groups = {}
    for name, (help_text, cfg_cls, func) in COMMANDS.items():
        parent = sub
        if " " in name:  # a group: `mmadapt tokenizer train`
            group, name = name.split(" ", 1)
            if group not in groups:
                groups[group] = sub.add_parser(group, help=f"{group} tools").add_subparsers(
                    dest="action", required=True, parser_class=ArgumentParser)
            parent = groups[group]
        cmd = parent.add_parser(name, help=help_text, description=help_text)
        add_dataclass_args(cmd, cfg_cls, "flags")
        cmd.set_defaults(func=func, config_class=cfg_cls)
    sub.add_parser("demo", help="the main job: mini-model vs standard adaptation on the built-in "
                   "benchmark (`mmadapt demo --help`)", add_help=False)
    sub.add_parser("pipeline", help="steps 1-4 for several languages from one YAML "
                   "(`mmadapt pipeline --help`)", add_help=False)
    return p


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["demo"]:
        from .demo import main as demo_main
        return demo_main(argv[1:])
    if argv[:1] == ["pipeline"]:
        from .pipeline import main as pipeline_main
        return pipeline_main(argv[1:])
    try:
        args = vars(build_parser().parse_args(argv))
    except SystemExit as exc:
        return exc.code
    func, cfg_cls = args.pop("func"), args.pop("config_class")
    for key in ("command", "action"):
        args.pop(key, None)
    try:
        func(cfg_cls(**args))
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
