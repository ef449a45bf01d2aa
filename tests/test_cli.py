"""The `mmadapt` command's own subcommands."""

import json
import os
import subprocess
import sys

MMADAPT = os.path.join(os.path.dirname(sys.executable), "mmadapt")


def test_info_reports_versions_accelerator_and_ops():
    proc = subprocess.run([MMADAPT, "info"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout[proc.stdout.index("{"):])
    import deepspeed
    import torch
    assert info["torch"] == torch.__version__ and info["deepspeed"] == deepspeed.__version__
    assert info["accelerator"] in ("cpu", "cuda") and info["communication_backend"] in ("gloo", "nccl", "ccl")
    assert set(info["deepspeed_ops"]) >= {"fused_adam", "cpu_adam"}


def test_unknown_subcommand_is_an_error():
    proc = subprocess.run([MMADAPT, "nonsense"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "invalid choice" in proc.stderr


def _parsers():
    """Every parser a user meets: mmadapt's subcommands, the demo, the generator, each launcher."""
    from mmadapt import cli, demo
    from mmadapt.launchers import adapt, evaluate, finetune, minijoint, minipost  # noqa: F401 - importable
    from mmadapt.stages import STAGES
    from mmadapt.stages.runner import Stage
    from mmadapt.config import build_parser
    from mmadapt.synthetic import GeneratorOutput, SyntheticConfig
    from mmadapt.config import ArgumentParser, add_dataclass_args

    for name, (_, cfg_cls, _) in cli.COMMANDS.items():
        parser = ArgumentParser(prog=f"mmadapt {name}")
        add_dataclass_args(parser, cfg_cls, "flags")
        yield f"mmadapt {name}", parser
    yield "mmadapt demo", demo.parser()
    generator = ArgumentParser(prog="generator")
    add_dataclass_args(generator, GeneratorOutput, "output")
    add_dataclass_args(generator, SyntheticConfig, "language")
    yield "generator", generator
    import importlib

    for name, spec in STAGES.items():  # every stage the registry (and so every launcher) runs
        target = getattr(importlib.import_module(f"mmadapt.stages.{spec.module}"), spec.target)
        if isinstance(target, type) and issubclass(target, Stage):
            assert target.name == name
            yield name, build_parser(name, "", target.sections, hidden=target.hidden_flags)
        else:
            yield name, build_parser(name, "", getattr(importlib.import_module(f"mmadapt.stages.{spec.module}"),
                                                       spec.sections))


def test_every_flag_has_help_and_shows_its_default():
    for name, parser in _parsers():
        for action in parser._actions:
            flag = action.option_strings[0] if action.option_strings else action.dest
            if flag in ("-h", "--config") or action.help == "==SUPPRESS==" or flag.startswith("--no_"):
                continue
            assert action.help and "(default:" in action.help, f"{name} {flag}: {action.help!r}"


def test_one_name_per_concept_with_the_old_spellings_kept():
    from mmadapt.config import build_parser, parse_sections
    from mmadapt.stages.finetune import Finetune
    from mmadapt.stages.minipost import MiniPost

    flags = {name: {s for a in parser._actions for s in a.option_strings} for name, parser in _parsers()}
    for name, options in flags.items():
        if any(o.startswith("--output") for o in options):
            assert "--output_dir" in options, name
    assert {"--model", "--from_pretrained"} <= flags["minipost"]
    assert {"--train_files", "--train_file", "--eval_files", "--eval_file"} <= flags["finetune"]
    assert {"--train_files", "--input", "--output_dir", "--output"} <= flags["mmadapt tokenizer train"]
    # the demo names a stage's flag as the stage does; its old spellings still parse
    assert {"--max_seq_length", "--seq_len", "--global_batch_size", "--batch", "--initializer_range", "--init_range",
            "--new_layers", "--minipost_new_layers"} <= flags["mmadapt demo"]
    from mmadapt import demo

    old = demo.parser().parse_args(["--seq_len", "48", "--batch", "8", "--init_range", "0.05",
                                    "--minipost_new_layers", "2"])
    assert (old.max_seq_length, old.global_batch_size, old.initializer_range, old.new_layers) == (48, 8, 0.05, 2)
    old = parse_sections(build_parser("m", "", MiniPost.sections), ["--from_pretrained", "x"], MiniPost.sections)
    assert old["minipost"].model == "x"
    old = parse_sections(build_parser("f", "", Finetune.sections), ["--train_file", "a.jsonl"], Finetune.sections)
    assert old["finetune"].train_files == ["a.jsonl"]
    # a stage offers only the flags it reads: --export_hf is pretraining's alone
    assert "--export_hf" in flags["minijoint"] and not any("--export_hf" in flags[s]
                                                           for s in ("minipost", "adapt", "finetune"))


def test_a_bad_flag_is_one_line_and_status_2():
    proc = subprocess.run([MMADAPT, "demo", "--word_order", "xyz"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "--word_order" in lines[0] and "fix:" in lines[0], proc.stderr
