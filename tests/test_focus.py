"""--init focus (mmadapt/focus.py): FOCUS's start on tiny data the test writes, its errors, and one
step 2 through the `deepspeed` launcher on 2 ZeRO-3 CPU ranks that starts from the FOCUS matrix.

The unit tests use word-level tokenizers in XLM-R's layout, so every piece is a known word: the target
shares 30 words with the source, and its new word "novum" occurs in exactly the contexts of the shared
word "anchor", so anchor must dominate novum's mix.
"""

import json
import os
import random
import string

import pytest
import torch

from mmadapt.errors import ConfigError
from mmadapt.focus import focus_start
from mmadapt.tokenizer import load_tokenizer

from test_adaptation import COMMON, run_stage, world  # noqa: F401 - world is a fixture used here

SPECIALS = ["<s>", "<pad>", "</s>", "<unk>"]


def word_tokenizer(words, path):
    """A word-level tokenizer in XLM-R's layout (specials first, <mask> last) that load_tokenizer accepts."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(SPECIALS + list(words) + ["<mask>"])}
    raw = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    raw.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    PreTrainedTokenizerFast(tokenizer_object=raw, bos_token="<s>", pad_token="<pad>", eos_token="</s>",
                            unk_token="<unk>", mask_token="<mask>").save_pretrained(path)
    return load_tokenizer(str(path))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("focus")
    rng = random.Random(0)

    def word():  # random letters: no character n-grams shared by design
        return "".join(rng.choice(string.ascii_lowercase) for _ in range(7))

    shared = ["anchor"] + [word() for _ in range(29)]
    contexts = {w: [word() for _ in range(4)] for w in shared}  # target-only context words
    lines = []
    for _ in range(60):
        for w in shared:
            a, b, c, d = contexts[w]
            lines.append(f"{a} {b} {w} {c} {d}")
        a, b, c, d = contexts["anchor"]
        lines.append(f"{a} {b} novum {c} {d}")
    rng.shuffle(lines)
    lines += ["rarum"] * 3  # seen, but fewer than min_count times
    ctx_words = [w for ws in contexts.values() for w in ws]
    target = word_tokenizer(shared + ctx_words + ["novum", "rarum", "ghost"], root / "tgt")
    source = word_tokenizer(["only_source"] + shared[::-1], root / "src")  # other ids for the shared words
    torch.manual_seed(0)
    rows, bias = torch.randn(len(source), 48), torch.randn(len(source))
    normal = torch.randn(len(target), 48) * 0.02
    return {"root": root, "lines": lines, "target": target, "source": source, "rows": rows, "bias": bias,
            "normal": normal, "shared": shared, "ctx": ctx_words}


@pytest.fixture
def keep_every_token(monkeypatch):
    """fastText's subsampling (t = 1e-4) is for real corpora; in this 155-word text every word is frequent,
    it would drop nearly all of them and leave vectors with no signal. Off here (t = 1), as for a real text
    whose tokens each make up a tiny share."""
    from mmadapt.focus import FASTTEXT

    monkeypatch.setitem(FASTTEXT, "t", 1.0)


def start(t, **over):
    args = dict(normal_rows=t["normal"], source_rows=t["rows"], source_bias=t["bias"], target_tok=t["target"],
                source_tok=t["source"], texts=t["lines"], min_count=10)
    args.update(over)
    return focus_start(**args)


@pytest.mark.usefixtures("keep_every_token")
def test_overlapping_tokens_are_copied_exactly(tiny):
    s = start(tiny)
    sv, tv = tiny["source"].get_vocab(), tiny["target"].get_vocab()
    shared = [p for p in tv if p in sv]
    assert s.copied == len(shared) == 30 + len(SPECIALS) + 1  # the words, the specials and <mask>
    for piece in shared:
        assert torch.equal(s.embeddings[tv[piece]], tiny["rows"][sv[piece]]), piece
        assert s.bias[tv[piece]] == tiny["bias"][sv[piece]], piece


@pytest.mark.usefixtures("keep_every_token")
def test_new_tokens_are_sparse_convex_mixes_and_the_right_neighbour_dominates(tiny):
    s = start(tiny)
    sv, tv = tiny["source"].get_vocab(), tiny["target"].get_vocab()
    words = tiny["shared"]  # the 30 candidates; "anchor" first
    basis = tiny["rows"][[sv[w] for w in words]].double()  # 30 independent rows of 48: weights recoverable
    assert s.combined == len(tiny["ctx"]) + 1  # the context words and novum
    for piece in tiny["ctx"] + ["novum"]:
        row = s.embeddings[tv[piece]].double()
        w = torch.linalg.lstsq(basis.T, row[:, None]).solution[:, 0]
        assert torch.allclose(basis.T @ w, row, atol=1e-5), piece  # a mix of overlapping source rows ...
        assert (w > -1e-6).all() and w.sum().item() == pytest.approx(1.0, abs=1e-5), piece  # ... convex ...
        assert (w.abs() < 1e-6).any(), piece  # ... and sparse: some of the 30 candidates exactly 0
        bias = (w @ tiny["bias"][[sv[p] for p in words]].double()).item()
        assert s.bias[tv[piece]].item() == pytest.approx(bias, abs=1e-5), piece  # the bias mixed alike
        if piece == "novum":  # its contexts are anchor's alone: anchor dominates
            assert w[0] > 2 * w[1:].max(), w


@pytest.mark.usefixtures("keep_every_token")
def test_unseen_and_rare_tokens_fall_back_to_normal(tiny):
    s = start(tiny)
    tv = tiny["target"].get_vocab()
    for piece in ("ghost", "rarum"):  # never in the text; 3 times, under min_count
        assert torch.equal(s.embeddings[tv[piece]], tiny["normal"][tv[piece]]) and s.bias[tv[piece]] == 0
    assert s.fallen_back == 2
    assert s.copied + s.combined + s.fallen_back == len(tiny["target"])
    assert start(tiny, min_count=3).fallen_back == 1  # rarum now has a vector; ghost still none


@pytest.mark.usefixtures("keep_every_token")
def test_deterministic_under_a_seed(tiny):
    a, b = start(tiny), start(tiny)
    assert torch.equal(a.embeddings, b.embeddings) and torch.equal(a.bias, b.bias)
    assert a.report().keys() == {"copied", "combined", "fallen_back", "seconds"} and a.seconds > 0


@pytest.mark.usefixtures("keep_every_token")
def test_one_line_errors(tiny, world, tmp_path, capsys):  # noqa: F811 - the imported fixture
    disjoint = word_tokenizer(["zzzq", "qqqz"], tmp_path / "disjoint")
    with pytest.raises(ConfigError, match="shares no token string"):
        start(tiny, source_tok=disjoint)
    with pytest.raises(ConfigError, match="holds no tokens"):
        start(tiny, texts=[])
    with pytest.raises(ConfigError, match="none of the 35 tokens"):
        start(tiny, min_count=10_000)

    from mmadapt.stages import entry

    adapt_main = entry("adapt")

    out = tmp_path / "out"
    base = [str(a) for a in COMMON] + ["--model", world["primary"], "--tokenizer", world["tgt_tok"],
                                       "--train_files", world["tgt"], "--init", "focus", "--output_dir", str(out)]
    assert adapt_main(base + ["--source_tokenizer", str(tmp_path / "disjoint")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"--tokenizer {world['tgt_tok']}" in err[0] and "disjoint" in err[0], err
    assert "fix:" in err[0]
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    base[base.index("--train_files") + 1] = str(empty)
    assert adapt_main(base) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "empty" in err[0], err
    assert not out.exists()


@pytest.mark.slow
def test_two_rank_zero3_step2_starts_from_the_focus_matrix(world):  # noqa: F811
    """With --lr 0 the pack's last embeddings are the start, gathered from the ZeRO-3 partitions."""
    from mmadapt.artifacts import load_pack
    from mmadapt.data import iter_texts
    from mmadapt.stages.adapt import AdaptConfig, focus_embeddings, load_step2_source

    out = world["root"] / "pack-focus"
    run_stage("adapt.py", COMMON + ["--model", world["primary"], "--through", "mini", "--tokenizer", world["tgt_tok"],
                                    "--train_files", world["tgt"], "--init", "focus", "--max_steps", 2, "--lr", 0.0,
                                    "--log_every", 1, "--output_dir", out, "--cache_dir", world["root"] / "cache"],
              ranks=2)
    tgt = load_tokenizer(world["tgt_tok"])
    src = load_step2_source(AdaptConfig(model=world["primary"], through="mini"), len(tgt))
    one = focus_embeddings(src, tgt, load_tokenizer(world["primary"]), iter_texts([world["tgt"]]), 10, seed=0)
    tensors, meta = load_pack(str(out), "last")
    assert torch.equal(tensors["word_embeddings"], one.embeddings)
    assert torch.equal(tensors["head_bias"], one.bias)
    summary = json.load(open(os.path.join(out, "summary.json")))
    assert summary["world_size"] == 2 and meta["init"] == "focus"
    for record in (summary["focus"], meta["focus"]):
        assert {k: record[k] for k in ("copied", "combined", "fallen_back")} == \
            {"copied": one.copied, "combined": one.combined, "fallen_back": one.fallen_back}
    assert one.combined > 0 and summary["focus"]["seconds"] > 0
    assert summary["frozen_checksum_before"] == summary["frozen_checksum_after"]


def test_pipeline_runs_each_init_and_refuses_unknown_ones(tmp_path):
    import yaml

    from mmadapt.pipeline import Pipeline, load_config

    cfg = {"output_dir": str(tmp_path / "pipe"), "source": {"model": "m"}, "task": {"train_file": "t.jsonl"},
           "languages": [{"name": "xx", "train_files": ["xx.txt"]}], "init": ["normal", "focus"]}
    path = tmp_path / "pipe.yaml"
    for init, needle in ((["normal", "wechsel"], "init ['wechsel']"), (["focus"], "init is given twice")):
        path.write_text(yaml.safe_dump({**cfg, "init": init, "step2": {"init": "overlap"} if init == ["focus"] else {}}))
        with pytest.raises(ConfigError, match=needle.replace("[", r"\[")):
            load_config(str(path))
    path.write_text(yaml.safe_dump(cfg))
    runs = []

    def run(call):  # a stand-in: records the run, leaves what the pipeline reads next
        runs.append((call.name, call.argv))
        os.makedirs(tmp_path / call.name)
        record = {"finetune.json": {}, "summary.json": {"steps": 1, "flops": 1.0}}
        fname = "finetune.json" if call.name == "finetune" else "summary.json"
        (tmp_path / call.name / fname).write_text(json.dumps(record[fname]))
        return str(tmp_path / call.name)

    pipe = Pipeline(load_config(str(path)))
    pipe.runs.run, pipe.tokenizer = run, lambda lang: "tok"
    rows = pipe.run()
    step2 = {name: args[args.index("--init") + 1] for name, args in runs[1:]}
    assert step2 == {"step2-xx-mini": "normal", "step2-xx-mini-focus": "focus", "step2-xx-full": "normal",
                     "step2-xx-full-focus": "focus"}
    assert [r["method"] for r in rows] == ["mini", "mini-focus", "full", "full-focus"]
