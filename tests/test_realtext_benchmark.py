"""benchmarks/realtext.py end to end on tiny made-up languages shaped like ../shared/data (2 ranks per stage).

What is checked is the benchmark's bookkeeping, not transfer (tiny models learn little): one pretraining,
task models on the English classify task, every path of every target at the same FLOP marks, the cipher's
perfect answer scoring exactly the English task models on the same examples, bests chosen on dev, the
majority baseline read off the test sample, and a rerun that keeps every complete stage.
"""

import json
import os
import random
import subprocess
import sys

import pytest

from conftest import REPO

pytestmark = pytest.mark.slow

TOPICS = [["run", "exec", "shell", "option"], ["daemon", "root", "mount", "kernel"],
          ["file", "format", "field", "line"], ["overview", "convention", "standard", "manual"]]
COMMON = ["the", "a", "of", "to", "is", "and", "this", "with", "for", "on", "it", "by"]
# the target is a code realtext.py never names (its defaults are de, fr, es): any language with its files runs
TARGET = "sw"


def sentence(rng: random.Random, label: int, suffix: str = "") -> str:
    words = rng.choices(COMMON, k=6) + rng.choices(TOPICS[label], k=3)
    rng.shuffle(words)
    return " ".join(w + suffix for w in words)


def make_data(folder, rng: random.Random) -> None:
    def text(name, n, suffix=""):
        (folder / name).write_text("\n".join(sentence(rng, rng.randrange(4), suffix) for _ in range(n)) + "\n")

    def task(name, n, suffix="", labels=(0, 1, 2, 3)):
        rows = []
        for i in range(n):
            label = labels[i % len(labels)]
            rows.append(json.dumps({"text": sentence(rng, label, suffix), "label": label, "page": f"p{i}"}))
        (folder / name).write_text("\n".join(rows) + "\n")

    text("mansec.en.text.txt", 300)
    text("fortunes.en.train.txt", 100)
    text("fortunes.en.test.txt", 60)
    text(f"mansec.{TARGET}.text.txt", 300, "en")
    task("mansec.en.train.jsonl", 160)
    task("mansec.en.dev.jsonl", 24)
    task("mansec.en.test.jsonl", 40)
    task(f"mansec.{TARGET}.dev.jsonl", 24, "en")
    task(f"mansec.{TARGET}.test.jsonl", 30, "en", labels=(0, 0, 0, 1, 2))  # unbalanced: majority 60%
    pairs = []
    for _ in range(60):
        label = rng.randrange(4)
        s = sentence(random.Random(len(pairs)), label)
        pairs.append(s + "\t" + " ".join(w + "en" for w in s.split()))
    (folder / f"parallel.en-{TARGET}.tsv").write_text("\n".join(pairs) + "\n")


TINY = ["--languages", TARGET, "cipher", "--vocab_size", "120", "--hidden_size", "32", "--num_layers", "3",
        "--mini_layers", "1", "--seq_len", "32", "--batch", "8", "--pretrain_steps", "8", "--minipost_steps", "4",
        "--finetune_seeds", "0", "--finetune_epochs", "1", "--task_seq_len", "16", "--full_steps", "6",
        "--eval_marks", "3", "--task_dev_limit", "20", "--task_test_limit", "25", "--pairs", "20", "--nproc", "2"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    data = tmp_path_factory.mktemp("data")
    make_data(data, random.Random(0))
    out = str(tmp_path_factory.mktemp("rt") / "out")
    cmd = [sys.executable, os.path.join(REPO, "benchmarks", "realtext.py"), "--output", out, "--data", str(data)] + TINY
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    with open(os.path.join(out, "realtext.json"), encoding="utf-8") as fh:
        report = json.load(fh)
    return out, cmd, report, data


def test_every_path_at_the_same_flop_marks(run):
    out, _, report, _ = run
    for lang in (TARGET, "cipher"):
        curves = report["targets"][lang]["curves"]
        assert set(curves) == {"full", "mini", "minipost"}
        for path, c in curves.items():
            assert len(c) == 4, (lang, path)  # step 0 and 3 marks
            per_step = report["targets"][lang]["step2"][path]["flops_per_step"]
            for k, (mark, ref) in enumerate(zip(c[1:], curves["full"][1:]), 1):
                assert abs(mark["flops"] - ref["flops"]) <= k * per_step / 2 + 1, (lang, path, k)
            assert all("zero_shot_macro_f1" in r and "dev_zero_shot_accuracy" in r for r in c)
        steps = {p: report["targets"][lang]["step2"][p]["steps"] for p in curves}
        assert steps["mini"] > steps["minipost"] > steps["full"]  # the cheaper path takes more steps
    # the target has pairs (retrieval figures); one pretraining served both targets
    assert "retrieval_top1" in report["targets"][TARGET]["curves"]["full"][0]
    assert os.path.isdir(os.path.join(out, "pretrain")) and not os.path.exists(os.path.join(out, f"{TARGET}-pretrain"))


def test_the_cipher_oracle_scores_the_english_task_models_exactly(run):
    _, _, report, _ = run
    c = report["targets"]["cipher"]
    assert c["oracle"] == pytest.approx(c["oracle_english_same_examples"], abs=1e-12)


def test_bests_on_dev_and_the_majority_baseline(run):
    out, _, report, _ = run
    de = report["targets"][TARGET]
    full = de["curves"]["full"]
    chosen = max(full[1:], key=lambda r: (r["dev_zero_shot_accuracy"], -r["flops"]))
    assert de["verdict"]["standard_best"] == chosen["zero_shot_accuracy"]
    labels = [json.loads(line)["label"] for line in open(os.path.join(out, "data", TARGET, "task.test.jsonl"))]
    assert len(labels) == de["test_examples"] == 25  # --task_test_limit
    assert de["majority"] == pytest.approx(max(labels.count(k) for k in set(labels)) / 25)
    assert de["baseline"] == max(0.25, de["majority"])
    assert de["verdict"]["chance"] == de["baseline"]  # "above chance" is read against the baseline
    text = open(os.path.join(out, "realtext.md"), encoding="utf-8").read()
    assert f"| {TARGET} | 25 |" in text and "Cipher oracle" in text and "Does this rung transfer?" in text
    # without German and French the rung cannot be called "yes", whatever the cipher did
    assert report["rung_transfers"] in ("no", "not decided (not run: de, fr)")
    assert f"**{report['rung_transfers']}**" in text
    assert os.path.getsize(os.path.join(out, "realtext.png")) > 0


def test_a_rerun_keeps_every_complete_stage(run):
    out, cmd, report, _ = run
    before = {name: os.path.getmtime(os.path.join(out, name, "summary.json"))
              for name in os.listdir(out) if os.path.isfile(os.path.join(out, name, "summary.json"))}
    assert len(before) == 1 + 1 + 1 + 6  # pretrain, minipost, one task model, 3 paths x 2 targets
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.count("complete, reused") == len(before)
    assert all(os.path.getmtime(os.path.join(out, n, "summary.json")) == t for n, t in before.items())
    # the rerun still reports what each kept stage took when it ran
    with open(os.path.join(out, "realtext.json"), encoding="utf-8") as fh:
        again = json.load(fh)["timings"]
    assert {n: again[n] for n in before} == {n: report["timings"][n] for n in before}


def test_overlap_through_the_launcher_starts_the_cipher_at_its_oracle(run, tmp_path):
    """The cipher's pieces are the source's under other ids, so --init overlap copies every row: step 2 starts
    from the perfect answer, whose zero-shot score the first report measured on the same examples."""
    out, cmd, report, _ = run
    other = str(tmp_path / "overlap")
    flags = cmd[cmd.index("--data"):]
    proc = subprocess.run([sys.executable, os.path.join(REPO, "benchmarks", "realtext.py"), "--output", other,
                           "--pretrained", out, "--init", "overlap", "--paths", "full", "mini", *flags],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    # the task model is reused; MiniPost is neither reused nor run: no path of this run reads it
    assert proc.stdout.count("complete in --pretrained, reused") == 1 and "== minipost" not in proc.stdout
    assert sorted(n for n in os.listdir(other) if "step2" in n) == [
        "cipher-step2-full", "cipher-step2-mini", f"{TARGET}-step2-full", f"{TARGET}-step2-mini"]
    with open(os.path.join(other, "realtext.json"), encoding="utf-8") as fh:
        cipher = json.load(fh)["targets"]["cipher"]
    for path in ("full", "mini"):
        with open(os.path.join(other, f"cipher-step2-{path}", "summary.json"), encoding="utf-8") as fh:
            summary = json.load(fh)
        assert summary["init"] == "overlap" and summary["rows_copied"] == summary["vocab_size"]
        assert cipher["curves"][path][0]["zero_shot_accuracy"] == pytest.approx(cipher["oracle"], abs=1e-9)
    assert cipher["oracle"] == pytest.approx(report["targets"]["cipher"]["oracle"], abs=1e-9)

    # benchmarks/starts.py compares the two starts on the real language (the cipher is left out: its
    # overlap start is its answer), against the standard path from normal
    starts = str(tmp_path / "starts")
    proc = subprocess.run([sys.executable, os.path.join(REPO, "benchmarks", "starts.py"), "--runs",
                           f"normal={out}", f"overlap={other}", "--output", starts],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    with open(os.path.join(starts, "starts.json"), encoding="utf-8") as fh:
        de = json.load(fh)
    assert list(de) == [TARGET]
    de = de[TARGET]
    assert set(de["rows"]) == {"normal/full", "normal/mini", "overlap/full", "overlap/mini"}
    reference = report["targets"][TARGET]["curves"]["full"]
    assert de["reference_final"] == reference[-1]["zero_shot_accuracy"]
    assert de["rows"]["normal/full"]["final"] == reference[-1]["zero_shot_accuracy"]
    # the reference holds its own final from its last mark at the latest: a saving of at least 1x
    assert de["rows"]["normal/full"]["saving"] >= 1.0
    assert de["rows"]["overlap/full"]["one_time"]["rows_copied"] > 0
    assert "| overlap | MiniJoint |" in open(os.path.join(starts, "starts.md"), encoding="utf-8").read()
    # a run named by another start than its own is refused
    proc = subprocess.run([sys.executable, os.path.join(REPO, "benchmarks", "starts.py"), "--runs",
                           f"normal={out}", f"focus={other}", "--output", starts], capture_output=True, text=True)
    assert proc.returncode == 2 and "from --init overlap" in proc.stderr


