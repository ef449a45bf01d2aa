"""The real-text benchmark's own rules on hand-made inputs (benchmarks/realtext.py, starts.py, ladder.py):
the rung's answer ("yes" needs the cipher within 10 points of its oracle and German and French 15 points above
their baselines, all measured), the source side's shape read from --pretrained, a short parallel file split
without an empty dev set, and runs that cannot be compared, missing data and bad flags refused in one line
(in this process: each is a check before anything runs, so no launch is needed to see it)."""

import importlib.util
import json
import os
import random

import pytest

from conftest import REPO


def load(name: str):
    spec = importlib.util.spec_from_file_location(name, os.path.join(REPO, "benchmarks", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def realtext():
    return load("realtext")


def target(best, baseline=0.25, oracle=None):
    f = {"verdict": {"standard_best": best}, "baseline": baseline}
    if oracle is not None:
        f["oracle"] = oracle
    return f


def test_all_three_pass(realtext):
    checks, answer = realtext.rung_transfers({"cipher": target(0.60, oracle=0.68), "de": target(0.43, 0.275),
                                              "fr": target(0.62, 0.463)})
    assert answer == "yes" and all(checks.values()) and len(checks) == 3


def test_the_cipher_alone_passing_decides_nothing(realtext):
    assert realtext.rung_transfers({"cipher": target(0.60, oracle=0.68)})[1] == "not decided (not run: de, fr)"


def test_the_cipher_alone_failing_says_no(realtext):
    checks, answer = realtext.rung_transfers({"cipher": target(0.438, oracle=0.685)})
    assert answer == "no" and checks == {"cipher_within_10_points_of_its_oracle": False}


@pytest.mark.parametrize("de_best, answer", [(0.424, "no"), (0.426, "yes")])
def test_fifteen_points_above_the_larger_of_chance_and_majority(realtext, de_best, answer):
    # German's baseline is its 27.5% majority: the bar is 42.5%
    figures = {"cipher": target(0.60, oracle=0.68), "de": target(de_best, 0.275), "fr": target(0.62, 0.463)}
    assert realtext.rung_transfers(figures)[1] == answer


def test_other_languages_are_reported_and_decide_nothing(realtext):
    # Spanish's majority baseline (63.7%) + 15 points is out of reach; Swahili is reported like any target
    checks, answer = realtext.rung_transfers({"cipher": target(0.60, oracle=0.68), "de": target(0.43, 0.275),
                                              "fr": target(0.62, 0.463), "es": target(0.30, 0.637),
                                              "sw": target(0.20)})
    assert answer == "yes"
    assert checks["es_15_points_above_baseline"] is False and checks["sw_15_points_above_baseline"] is False


def write_json(path, value) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(value, fh)


@pytest.fixture
def pretrained_run(tmp_path):
    """A run directory whose complete pretraining was 6 x 256 with 8 heads, mini head after layer 2."""
    base = tmp_path / "base"
    write_json(str(base / "pretrain" / "run_config.json"), {
        "model": {"hidden_size": 256, "num_layers": 6, "num_heads": 8, "mini_layers": 2, "mini_loss_weight": 2.0,
                  "hidden_dropout": 0.1}, "train": {"max_steps": 1500, "lr": 5e-4}})
    write_json(str(base / "pretrain" / "summary.json"), {"steps": 1500})
    return str(base)


def test_the_source_shape_is_read_from_pretrained(realtext, pretrained_run):
    a = realtext.parse(["--output", "x", "--pretrained", pretrained_run, "--mini_layers", "2"])
    realtext.fill_source_flags(a, pretrained_run)
    assert (a.num_layers, a.hidden_size, a.num_heads, a.mini_layers, a.pretrain_steps, a.pretrain_lr) == (
        6, 256, 8, 2, 1500, 5e-4)
    # MiniPost is not complete there: its flags keep their defaults (this run makes its own)
    assert (a.minipost_new_layers, a.minipost_steps) == (1, 600)


def test_a_source_flag_that_disagrees_with_pretrained_is_refused(realtext, pretrained_run):
    a = realtext.parse(["--output", "x", "--pretrained", pretrained_run, "--num_layers", "4"])
    with pytest.raises(realtext.ConfigError, match="--num_layers 4: --pretrained .* has num_layers 6"):
        realtext.fill_source_flags(a, pretrained_run)


def test_without_pretrained_the_defaults_and_the_flags(realtext, tmp_path):
    a = realtext.parse(["--output", "x", "--hidden_size", "192"])
    realtext.fill_source_flags(a, str(tmp_path))
    assert (a.hidden_size, a.num_layers, a.num_heads, a.pretrain_steps) == (192, 4, 6, 3000)


@pytest.mark.parametrize("lines, test, dev", [(600, 400, 200), (9, 6, 3), (2, 1, 1), (1, 0, 0)])
def test_a_short_parallel_file_keeps_a_dev_split(realtext, tmp_path, lines, test, dev):
    data = tmp_path / "data"
    data.mkdir()
    words = "the file option daemon line kernel manual shell".split()
    text = "\n".join(" ".join(words[i % 8:] + words[:i % 8]) for i in range(200)) + "\n"
    (data / "mansec.sw.text.txt").write_text(text)
    for split in ("dev", "test"):
        (data / f"mansec.sw.{split}.jsonl").write_text(json.dumps({"text": "the file", "label": 0}) + "\n")
    (data / "parallel.en-sw.tsv").write_text("".join(f"the file {i}\tfile the {i}\n" for i in range(lines)))
    a = realtext.parse(["--output", str(tmp_path / "out"), "--data", str(data), "--vocab_size", "40"])
    files = realtext.RealText(a).target_data("sw")
    if test == 0:
        assert "pairs" not in files  # one pair cannot be split: no retrieval, said on stdout
        return
    assert len(open(files["pairs"]).readlines()) == test and len(open(files["pairs_dev"]).readlines()) == dev


def report(config: dict, targets=("de",)) -> dict:
    return {"config": config, "targets": {t: {} for t in targets}}


def test_starts_refuses_runs_made_on_other_examples(tmp_path):
    starts = load("starts")
    common = {"seed": 0, "task_dev_limit": 400, "task_test_limit": 1000, "pairs": 400, "full_steps": 300,
              "eval_marks": 10, "batch": 64, "seq_len": 128, "data": "/d"}
    write_json(str(tmp_path / "n" / "realtext.json"), report({**common, "init": "normal"}))
    write_json(str(tmp_path / "o" / "realtext.json"), report({**common, "init": "overlap", "seed": 1}))
    write_json(str(tmp_path / "f" / "realtext.json"), report({**common, "init": "focus"}))
    assert set(starts.load_runs([f"normal={tmp_path / 'n'}", f"focus={tmp_path / 'f'}"])) == {"normal", "focus"}
    with pytest.raises(starts.ConfigError, match="made with --seed 1, the normal run with 0"):
        starts.load_runs([f"normal={tmp_path / 'n'}", f"overlap={tmp_path / 'o'}"])


def test_ladder_names_a_missing_target_in_one_line(tmp_path, capsys):
    ladder = load("ladder")
    write_json(str(tmp_path / "r" / "realtext.json"), report({}, targets=("sw",)))
    assert ladder.main(["--runs", str(tmp_path / "r"), "--output", str(tmp_path / "l.png")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no cipher target in that run (it has sw)" in err


def run_main(realtext, argv, capsys):
    """realtext.py's main in this process (what its `sys.exit(main())` would exit with, and its stderr)."""
    try:
        status = realtext.main(argv)
    except SystemExit as exc:  # an argparse error
        status = exc.code
    return status, capsys.readouterr().err


def test_missing_data_is_one_line_and_writes_nothing(realtext, tmp_path, capsys):
    out = tmp_path / "out"
    status, err = run_main(realtext, ["--output", str(out), "--data", str(tmp_path / "nowhere")], capsys)
    assert status == 2 and "mansec.en.text.txt" in err
    assert len(err.strip().splitlines()) == 1 and not out.exists()


@pytest.mark.parametrize("flags, named", [(["--task_test_limit", "0"], "--task_test_limit 0"),
                                          (["--paths", "full", "minipost"], "--paths full minipost"),
                                          (["--languages", "ru"], "mansec.ru.text.txt: not found"),
                                          (["--languages", "en"], "--languages en: English is the source"),
                                          (["--languages", "../x"], "--languages ../x: not a language code")])
def test_a_bad_count_is_one_line_and_writes_nothing(realtext, tmp_path, capsys, flags, named):
    from test_realtext_benchmark import TARGET, make_data

    data = tmp_path / "data"
    data.mkdir()
    make_data(data, random.Random(1))
    out = tmp_path / "out"
    status, err = run_main(realtext, ["--output", str(out), "--data", str(data), "--languages", TARGET, "cipher",
                                      *flags], capsys)
    assert status == 2 and named in err
    assert len(err.strip().splitlines()) == 1 and not out.exists()
