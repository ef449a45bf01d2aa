"""No command deletes what it did not make: every command that writes a directory replaces only its own
earlier output and refuses anything else with one line (exit 2), touching nothing."""

import os

import pytest
import torch
import yaml

from mmadapt.cli import main as cli_main
from mmadapt.config import ModelConfig, build_parser, parse_sections, resolve_model
from mmadapt.demo import DEMO_MARKER, Demo, DemoConfig
from mmadapt.demo import main as demo_main
from mmadapt.errors import ConfigError
from mmadapt.hf_io import export_hf
from mmadapt.model import MiniJointForMaskedLM
from mmadapt.orchestrate import as_flags
from mmadapt.pipeline import main as pipeline_main


def one_line_error(capsys, *needles):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:"), err
    for needle in needles:
        assert needle in err[0], err[0]


def users_dir(tmp_path, name="mine"):
    d = tmp_path / name
    d.mkdir()
    (d / "thesis.tex").write_text("a user's file")
    return d


def test_demo_refuses_a_directory_it_did_not_make(tmp_path, capsys, monkeypatch):
    d = users_dir(tmp_path)
    assert demo_main(["--output", str(d)]) == 2
    one_line_error(capsys, str(d), DEMO_MARKER, "fix:")
    assert os.listdir(d) == ["thesis.tex"]
    monkeypatch.chdir(d)  # `mmadapt demo --output .` in a checkout
    assert demo_main(["--output", "."]) == 2
    one_line_error(capsys, "not empty and not made by this command")
    assert os.listdir(d) == ["thesis.tex"]


def test_a_demo_rerun_replaces_only_the_demos_own_entries(tmp_path):
    out = tmp_path / "demo"
    Demo(DemoConfig(output_dir=str(out))).prepare_output()  # a first run claims the directory
    for entry in ("pretrain", "finetune-0", "step2-full", "data"):
        (out / entry).mkdir()
        (out / entry / "summary.json").write_text("{}")
    (out / "report.md").write_text("old report")
    (out / "my-notes.md").write_text("the user's, added later")
    Demo(DemoConfig(output_dir=str(out))).prepare_output()
    assert sorted(os.listdir(out)) == sorted([DEMO_MARKER, "logs", "my-notes.md"])
    (out / "pretrain").mkdir()
    Demo(DemoConfig(output_dir=str(out), reuse=True)).prepare_output()  # --reuse keeps complete stages
    assert (out / "pretrain").is_dir()


def test_tokenizer_train_refuses_a_directory_with_other_files(tmp_path, capsys):
    text = tmp_path / "t.txt"
    text.write_text("\n".join(["the cat sees the dog", "a bird sings"] * 50) + "\n")
    d = users_dir(tmp_path)
    args = ["tokenizer", "train", "--input", str(text), "--vocab_size", "30", "--whole_words"]
    assert cli_main(args + ["--output", str(d)]) == 2
    one_line_error(capsys, str(d), "thesis.tex", "fix:")
    assert os.listdir(d) == ["thesis.tex"]
    tok = tmp_path / "tok"
    assert cli_main(args + ["--output", str(tok)]) == 0
    assert cli_main(args + ["--output", str(tok)]) == 0  # its own earlier output is replaced
    assert not [e for e in os.listdir(tmp_path) if e.startswith(".")]  # no temporary left behind


def test_export_refuses_a_directory_with_other_files(tmp_path):
    cfg = resolve_model(ModelConfig(model="tiny", hidden_size=16, num_layers=2, num_heads=2, intermediate_size=32,
                                    vocab_size=40, max_position_embeddings=20, mini_layers=1))
    sd = MiniJointForMaskedLM(cfg).state_dict()
    d = users_dir(tmp_path)
    with pytest.raises(ConfigError, match="thesis.tex"):
        export_hf(sd, cfg, str(d))
    assert os.listdir(d) == ["thesis.tex"]
    export_hf(sd, cfg, str(tmp_path / "hf"))
    torch.manual_seed(1)
    export_hf(MiniJointForMaskedLM(cfg).state_dict(), cfg, str(tmp_path / "hf"))  # replaces its own


def test_pipeline_says_false_and_refuses_what_no_flag_can_say(tmp_path, capsys):
    flags = as_flags({"mini_head": False, "activation_checkpointing": True, "lr": 0.1, "train_files": ["a", "b"]})
    assert flags == ["--no_mini_head", "--activation_checkpointing", "--lr", "0.1", "--train_files", "a", "b"]
    parser = build_parser("minijoint", "")
    sections = parse_sections(parser, flags)
    assert sections["model"].mini_head is False and sections["model"].activation_checkpointing is True
    # every switch has its --no_ form, so false is always expressible
    assert parse_sections(parser, ["--no_activation_checkpointing"])["model"].activation_checkpointing is False

    base = {"output_dir": str(tmp_path / "p"), "source": {"model": "x"}, "task": {"train_file": "t"},
            "languages": [{"name": "xx", "train_files": ["a"]}]}
    for bad, needle in (({"step2": {"lr": None}}, "`lr: None`"), ({"common": {"seed": {"a": 1}}}, "`seed:")):
        path = tmp_path / "p.yaml"
        path.write_text(yaml.safe_dump({**base, **bad}))
        assert pipeline_main([str(path)]) == 2
        one_line_error(capsys, needle, "fix:")
    d = users_dir(tmp_path)
    path.write_text(yaml.safe_dump({**base, "output_dir": str(d)}))
    assert pipeline_main([str(path)]) == 2
    one_line_error(capsys, str(d), "fix:")
    assert os.listdir(d) == ["thesis.tex"] and not (tmp_path / "p").exists()
