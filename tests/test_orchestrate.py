"""The one orchestrator (mmadapt/orchestrate.py): a plan's settings become the stage's own typed config
the way the stage parses them, and a wrong one fails before anything runs, naming where it came from."""

import pytest
import yaml

from mmadapt.demo import Demo, DemoConfig
from mmadapt.errors import ConfigError
from mmadapt.orchestrate import Runs, StageCall
from mmadapt.pipeline import load_config
from mmadapt.pipeline import main as pipeline_main


def test_settings_become_the_stages_typed_config():
    call = StageCall("step2-de-mini", "adapt", {"model": "m", "through": "mini", "max_steps": 7, "lr": 0.5,
                                                "train_files": ["a.txt", "b.txt"], "weight_decay": 0.0,
                                                "activation_checkpointing": False, "init": "overlap"})
    assert call.config("train").max_steps == 7 and call.config("train").lr == 0.5
    assert call.config("train").weight_decay == 0.0
    assert call.config("data").train_files == ["a.txt", "b.txt"]
    assert call.config("adapt").through == "mini" and call.config("adapt").init == "overlap"
    assert call.argv[:4] == ["--model", "m", "--through", "mini"]
    assert "--no_activation_checkpointing" in call.argv


@pytest.mark.parametrize("values, needles", [
    ({"max_stpes": 3}, ["max_stpes", "adapt", "where-it-came-from"]),  # misspelt
    ({"max_steps": "many"}, ["--max_steps", "'many'", "where-it-came-from"]),  # wrong type
    ({"through": "half"}, ["--through", "'half'"]),  # not one of the choices
    ({"forget_every": 5}, ["forget_every"]),  # a field step 2 does not read
])
def test_a_wrong_setting_is_one_line_naming_it(values, needles):
    with pytest.raises(ConfigError) as exc:
        StageCall("step2", "adapt", {"model": "m", **values}, where="where-it-came-from")
    message = str(exc.value)
    assert "\n" not in message and "fix:" in message
    for needle in needles:
        assert needle in message, message


def test_runs_names_each_stages_output_directory(tmp_path):
    call = Runs(str(tmp_path / "run"), nproc=2).call("finetune-3", "finetune", {"task": "classify", "model": "m"})
    assert call.config("train").output_dir == str(tmp_path / "run" / "finetune-3")


def test_the_pipeline_checks_every_stage_before_the_first_runs(tmp_path, capsys):
    base = {"output_dir": str(tmp_path / "p"), "source": {"pretrain": {"model": "tiny", "max_steps": 2}},
            "task": {"train_file": "t.jsonl", "args": {"epochs": 1}},
            "languages": [{"name": "xx", "train_files": ["a.txt"]}], "step2": {"max_steps": 3}}
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(base))
    cfg = load_config(str(path))
    assert cfg.languages[0].vocab_size == 8000 and cfg.through == ["mini", "full"]  # typed, with defaults
    for bad, needles in (
            ({"step2": {"max_stepz": 3}}, ["step2", "max_stepz"]),  # the last stage's typo, caught first
            ({"task": {"train_file": "t.jsonl", "args": {"epochs": "two"}}}, ["task.args", "--epochs"]),
            ({"languages": [{"name": "xx", "train_file": ["a.txt"]}]}, ["languages[0]", "train_file"]),
            ({"sorce": {"model": "m"}}, ["sorce"])):
        path.write_text(yaml.safe_dump({**base, **bad}))
        assert pipeline_main([str(path)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error:") and "fix:" in err[0], err
        assert all(n in err[0] for n in needles), err[0]
        assert not (tmp_path / "p").exists()


def test_the_demo_checks_its_first_stage_through_the_stages_parser(tmp_path):
    call = Demo(DemoConfig(output_dir=str(tmp_path / "d"), hidden_size=48, num_heads=3)).pretrain_call()
    model = call.config("model")
    assert (model.hidden_size, model.num_heads, model.intermediate_size) == (48, 3, 192)
    assert call.config("train").output_dir == str(tmp_path / "d" / "pretrain")


def test_a_kept_stage_reports_the_seconds_recorded_when_it_ran(tmp_path):
    """A rerun that keeps complete stages still reports what they took; a resumed stage's segments add up,
    a fresh start replaces the record."""
    from mmadapt.artifacts import record_stage_seconds, recorded_stage_seconds, write_json

    run = str(tmp_path)
    assert record_stage_seconds(run, "pretrain", 100.0, resumed=False) == 100.0
    assert record_stage_seconds(run, "pretrain", 25.5, resumed=True) == 125.5  # a second segment
    assert record_stage_seconds(run, "step2-full", 7.0, resumed=True) == 7.0  # nothing before it to add to
    assert record_stage_seconds(run, "step2-full", 3.0, resumed=False) == 3.0  # run again from scratch
    assert recorded_stage_seconds(run) == {"pretrain": {"seconds": 125.5, "segments": 2},
                                           "step2-full": {"seconds": 3.0, "segments": 1}}
    runs = Runs(run, nproc=1)
    for name in ("pretrain", "finetune-0"):  # both complete; finetune-0 ran before stages were recorded
        (tmp_path / name).mkdir()
        write_json(str(tmp_path / name / "summary.json"), {"steps": 1})
    runs.run(runs.call("pretrain", "minijoint", {"max_steps": 5}))
    runs.run(runs.call("finetune-0", "finetune", {"task": "classify"}))
    assert runs.seconds == {"pretrain": 125.5}


@pytest.mark.parametrize("text", ["{not json", '{"pretrain": 12.5}', '{"pretrain": {"seconds": "long", "segments": 1}}'])
def test_a_broken_seconds_record_is_one_line_and_left_alone(tmp_path, text):
    from mmadapt.artifacts import record_stage_seconds

    (tmp_path / "logs").mkdir()
    record = tmp_path / "logs" / "stage_seconds.json"
    record.write_text(text)
    with pytest.raises(ConfigError) as exc:
        record_stage_seconds(str(tmp_path), "pretrain", 3.0, resumed=True)
    assert "\n" not in str(exc.value) and "stage_seconds.json" in str(exc.value) and "fix:" in str(exc.value)
    assert record.read_text() == text  # not overwritten
