"""Steps 1b-4 on real engines: MiniPost, step 2 through mini and full (2-rank ZeRO-3), fine-tuning,
zero-shot evaluation, and the bad inputs that must be refused.

The "pretrained" source model is a tiny MiniJoint model exported to Hugging Face format by the test:
what matters here is what each step freezes, trains, records and refuses, not the model's quality.
"""

import json
import os
import random
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from mmadapt.config import ModelConfig, resolve_model
from mmadapt.errors import ConfigError
from mmadapt.hf_io import export_hf, load_pretrained_state_dict
from mmadapt.launch import free_port
from mmadapt.model import MiniJointForMaskedLM
from mmadapt.artifacts import load_finetuned, load_pack
from mmadapt.packs import swap_language
from mmadapt.stages.adapt import AdaptConfig, initial_embeddings, load_step2_source
from mmadapt.stages.evaluate import evaluate_pack
from mmadapt.tasks import load_examples, task_spec
from mmadapt.tokenizer import train_tokenizer

from conftest import REPO

pytestmark = pytest.mark.slow

PY = sys.executable
DEEPSPEED = os.path.join(os.path.dirname(sys.executable), "deepspeed")
ZERO3 = os.path.join(REPO, "ds_configs", "zero3_cpu.json")
NOUNS = ["cat", "dog", "bird", "fish", "farmer", "child", "teacher", "river", "house", "garden"]
VERBS = ["sees", "likes", "finds", "helps", "feeds"]


_free_port = free_port


def run_stage(script, args, ranks=1):
    path = os.path.join(REPO, "launchers", script)
    cmd = ([DEEPSPEED, "--num_gpus", str(ranks), "--master_port", str(_free_port()), path] if ranks > 1
           else [PY, path])
    proc = subprocess.run(cmd + [str(a) for a in args], capture_output=True, text=True, cwd=REPO, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def write_jsonl(path, rows):
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return str(path)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Source text + tokenizer, a tiny exported MiniJoint model, a target language, task fixtures."""
    root = tmp_path_factory.mktemp("adapt")
    rng = random.Random(0)
    src_lines = [f"the {rng.choice(NOUNS)} {rng.choice(VERBS)} the {rng.choice(NOUNS)} ." for _ in range(3000)]
    (root / "src.txt").write_text("\n".join(src_lines) + "\n")
    # target: a cipher of the source words (reversed), sharing a few pieces ("the", ".")
    tgt_lines = [" ".join(w if w in ("the", ".") else w[::-1] for w in line.split()) for line in src_lines]
    (root / "tgt.txt").write_text("\n".join(tgt_lines) + "\n")
    distinct = list(dict(zip(src_lines, tgt_lines)).items())[:40]  # no ties for retrieval to break
    (root / "parallel.tsv").write_text("".join(f"{s}\t{t}\n" for s, t in distinct))
    src_tok = train_tokenizer([str(root / "src.txt")], 60, str(root / "src_tok"))
    train_tokenizer([str(root / "tgt.txt")], 60, str(root / "tgt_tok"))

    cfg = resolve_model(ModelConfig(model="tiny", hidden_size=32, num_layers=4, num_heads=4, intermediate_size=64,
                                    max_position_embeddings=66, mini_layers=2), tokenizer_vocab=len(src_tok))
    torch.manual_seed(0)
    export_hf(MiniJointForMaskedLM(cfg).state_dict(), cfg, str(root / "primary"), str(root / "src_tok"))
    torch.manual_seed(1)
    export_hf(MiniJointForMaskedLM(cfg).state_dict(), cfg, str(root / "other"), str(root / "src_tok"))

    def pairs(n, flip):
        rows = []
        for _ in range(n):
            a, b, v = rng.choice(NOUNS), rng.choice(NOUNS), rng.choice(VERBS)
            label = rng.randrange(3)
            hyp = {0: f"the {a} {v} the {b} .", 1: f"the {b} {v} the {a} .", 2: f"the {a} {v} the {b} ."}[label]
            prem = f"the {a} {v} the {b} ."
            if flip:
                prem, hyp = (" ".join(w if w in ("the", ".") else w[::-1] for w in s.split()) for s in (prem, hyp))
            rows.append({"premise": prem, "hypothesis": hyp, "label": label})
        return rows

    qa = []
    for _ in range(80):
        a, b, v = rng.choice(NOUNS), rng.choice(NOUNS), rng.choice(VERBS)
        ctx = f"the {a} {v} the {b} . the {b} is happy ."
        qa.append({"id": str(len(qa)), "context": ctx, "question": f"who {v} the {b} ?",
                   "answers": {"text": [f"the {a}"], "answer_start": [0]}})
    return {
        "root": root, "primary": str(root / "primary"), "other": str(root / "other"),
        "src": str(root / "src.txt"), "tgt": str(root / "tgt.txt"),
        "src_tok": str(root / "src_tok"), "tgt_tok": str(root / "tgt_tok"),
        "xnli_train": write_jsonl(root / "xnli.train.jsonl", pairs(96, False)),
        "xnli_src_test": write_jsonl(root / "xnli.en.jsonl", pairs(30, False)),
        "xnli_tgt_test": write_jsonl(root / "xnli.xx.jsonl", pairs(30, True)),
        "paws": write_jsonl(root / "paws.jsonl", [{"sentence1": r["premise"], "sentence2": r["hypothesis"],
                                                   "label": int(r["label"] == 0)} for r in pairs(64, False)]),
        "squad": write_jsonl(root / "squad.jsonl", qa),
        "parallel": str(root / "parallel.tsv"),
    }


COMMON = ["--deepspeed_config", ZERO3, "--max_seq_length", 32, "--global_batch_size", 8, "--log_every", 5]


@pytest.fixture(scope="module")
def packs(world, finetuned):
    root = world["root"]
    out = {}
    for through in ("mini", "full"):
        out[through] = str(root / f"pack-{through}")
        # the full path also exercises ZeRO-3 + non-reentrant checkpointing + frozen parameters
        extra = ["--activation_checkpointing"] if through == "full" else []
        run_stage("adapt.py", COMMON + extra + ["--model", world["primary"], "--through", through, "--tokenizer",
                                        world["tgt_tok"], "--train_files", world["tgt"], "--eval_files",
                                        world["tgt"], "--parallel_file", world["parallel"],
                                        "--task_models", finetuned, "--task_eval_file", world["xnli_tgt_test"],
                                        "--eval_every", 5, "--max_steps", 10, "--lr", 5e-3,
                                        "--output_dir", out[through], "--cache_dir", root / "cache"], ranks=2)
    return out


@pytest.fixture(scope="module")
def finetuned(world):
    out = str(world["root"] / "ft-xnli")
    run_stage("finetune.py", COMMON + ["--task", "xnli", "--model", world["primary"], "--train_file",
                                       world["xnli_train"], "--eval_file", world["xnli_src_test"], "--epochs", 1,
                                       "--lr", 1e-3, "--output_dir", out])
    return out


@pytest.mark.parametrize("through", ["mini", "full"])
def test_step2_trains_only_the_language_under_2_rank_zero3(world, packs, through):
    summary = json.load(open(os.path.join(packs[through], "summary.json")))
    assert summary["world_size"] == 2
    assert summary["frozen_tensors"] > 0
    assert summary["frozen_checksum_before"] == summary["frozen_checksum_after"]
    tensors, meta = load_pack(packs[through], "last")
    assert meta["through"] == through and meta["depth"] == (2 if through == "mini" else 4)
    # the embeddings moved away from their seeded initialisation
    from mmadapt.tokenizer import load_tokenizer
    tgt = load_tokenizer(world["tgt_tok"])
    src = load_step2_source(AdaptConfig(model=world["primary"], through=through), len(tgt))
    init, _, _ = initial_embeddings(src, tgt, "normal", None, seed=0)
    assert tensors["word_embeddings"].shape == init.shape
    assert not torch.allclose(tensors["word_embeddings"], init)
    evals = [json.loads(line) for line in open(os.path.join(packs[through], "eval.jsonl"))]
    assert [e["step"] for e in evals] == [0, 5, 10]
    assert evals[-1]["eval_loss"] < evals[0]["eval_loss"]
    assert evals[-1]["flops"] == pytest.approx(summary["flops"])


@pytest.mark.parametrize("through", ["mini", "full"])
def test_partitioned_evaluation_matches_one_plain_process(world, packs, finetuned, through):
    """Step 2's evaluation ran partitioned over 2 ZeRO-3 ranks, each with a share of the held-out batches,
    sentences and task examples; its step-0 figures are one plain process's on the same embeddings."""
    from mmadapt.data import build_blocks
    from mmadapt.evaluators import PrimaryEvaluator
    from mmadapt.masking import Masker
    from mmadapt.tokenizer import load_tokenizer

    tgt = load_tokenizer(world["tgt_tok"])
    cfg = AdaptConfig(model=world["primary"], through=through, parallel_file=world["parallel"],
                      task_models=[finetuned], task_eval_file=world["xnli_tgt_test"])
    src = load_step2_source(cfg, len(tgt))
    emb, bias, _ = initial_embeddings(src, tgt, "normal", None, seed=0)
    blocks = build_blocks(tgt, 32, [world["tgt"]], cache_dir=str(world["root"] / "cache"))
    blocks = blocks.select(range(min(cfg.eval_blocks, len(blocks))))
    masker, g = Masker(tgt, 0.15), torch.Generator().manual_seed(1234)
    batches = [masker(blocks[i:i + 16]["input_ids"], g) for i in range(0, len(blocks), 16)]
    evaluator = PrimaryEvaluator(src.primary_cfg, src.primary_sd, tgt, {"zero_optimization": {"stage": 0}}, batches,
                                 load_tokenizer(world["primary"]), {"": world["parallel"]}, cfg.parallel_limit,
                                 [finetuned], {"": world["xnli_tgt_test"]})
    assert len(evaluator.batches) > 2  # more than one share per rank
    plain = evaluator(emb, bias)
    step0 = json.loads(open(os.path.join(packs[through], "eval.jsonl")).readline())
    assert step0["step"] == 0
    assert step0["eval_loss"] == pytest.approx(plain["eval_loss"], rel=1e-5)
    assert step0["retrieval_top1"] == plain["retrieval_top1"]
    assert step0["zero_shot_accuracy"] == pytest.approx(plain["zero_shot_accuracy"], abs=1e-6)
    assert len(evaluator.zero_shot.splits[""][0]) == 30  # no process group here: all of them


def test_mini_step_costs_less_and_holds_fewer_parameters(packs):
    mini = json.load(open(os.path.join(packs["mini"], "summary.json")))
    full = json.load(open(os.path.join(packs["full"], "summary.json")))
    assert full["flops_per_step"]["recompute"] > 0 == mini["flops_per_step"]["recompute"]  # checkpointing
    ratio = (full["flops_per_step"]["total"] - full["flops_per_step"]["recompute"]) / mini["flops_per_step"]["total"]
    assert 1.5 < ratio < 2.5  # 2 of 4 layers; the head and embeddings cost the same
    # the mini engine never holds layers 3..4: two layers' worth of parameters fewer
    layer = 4 * (32 * 32 + 32) + 2 * 32 * 64 + 64 + 32 + 4 * 32
    assert full["parameters"] - mini["parameters"] == 2 * layer
    assert mini["parameters_per_rank"][0] < mini["parameters"] * 0.6  # partitioned over 2 ranks
    # the evaluation model is the whole primary model, partitioned too: no rank holds all of it
    for summary in (mini, full):
        assert summary["eval_parameters"] > mini["parameters"]
        assert summary["eval_parameters_this_rank"] < summary["eval_parameters"] * 0.6


def test_overlap_init_copies_exactly_the_shared_rows(world):
    from mmadapt.tokenizer import load_tokenizer
    src_tok, tgt_tok = load_tokenizer(world["src_tok"]), load_tokenizer(world["tgt_tok"])
    src = load_step2_source(AdaptConfig(model=world["primary"], through="mini"), len(tgt_tok))
    emb, bias, copied = initial_embeddings(src, tgt_tok, "overlap", src_tok, seed=3)
    source_emb = src.primary_sd["roberta.embeddings.word_embeddings.weight"]
    sv = src_tok.get_vocab()
    shared = {p: i for p, i in tgt_tok.get_vocab().items() if p in sv}
    assert copied == len(shared) and 5 <= copied < len(tgt_tok)  # specials, "▁the", "." at least
    for piece, tid in tgt_tok.get_vocab().items():
        if piece in sv:
            assert torch.equal(emb[tid], source_emb[sv[piece]]), piece
            assert bias[tid] == src.head_bias_source[sv[piece]]
        elif tid != tgt_tok.pad_token_id:
            assert not any(torch.equal(emb[tid], row) for row in source_emb), piece


def test_swap_round_trip_restores_the_source_model(world, packs):
    cfg = resolve_model(ModelConfig(**json.load(open(os.path.join(world["primary"], "mmadapt_model.json")))))
    model = MiniJointForMaskedLM(cfg).eval()
    sd = load_pretrained_state_dict(world["primary"])
    from mmadapt.hf_io import load_into
    load_into(model, sd)
    ids = torch.tensor([[0, 5, 6, 7, 2]])
    with torch.no_grad():
        before = model.logits(ids)
        tensors, _ = load_pack(packs["mini"])
        swap_language(model, tensors)
        assert model.roberta.embeddings.word_embeddings.weight.shape[0] == tensors["word_embeddings"].shape[0]
        assert model.lm_head.decoder_weight is model.roberta.embeddings.word_embeddings.weight
        swap_language(model, {"word_embeddings": sd["roberta.embeddings.word_embeddings.weight"],
                              "head_bias": sd["lm_head.bias"]})
        torch.testing.assert_close(model.logits(ids), before, rtol=0, atol=0)


def test_finetuning_freezes_embeddings_and_source_score_reproduces(world, finetuned):
    spec, model, _, meta = load_finetuned(finetuned)
    primary = load_pretrained_state_dict(world["primary"])
    tuned = model.state_dict()
    for name in primary:
        if name.startswith("roberta.embeddings."):
            assert torch.equal(tuned[name], primary[name]), name
    assert any(not torch.equal(tuned[n], primary[n]) for n in primary if n.startswith("roberta.encoder."))
    examples = load_examples(spec, world["xnli_src_test"])
    result = evaluate_pack(finetuned, "source", examples)
    assert result["accuracy"] == meta["source_score"]["accuracy"]


def test_zero_shot_evaluation_with_packs_and_refusals(world, packs, finetuned):
    examples = load_examples(task_spec("xnli"), world["xnli_tgt_test"])
    for through in ("mini", "full"):
        result = evaluate_pack(finetuned, packs[through], examples)
        assert 0.0 <= result["accuracy"] <= 1.0 and result["examples"] == 30
        assert f"({through})" in result["pack"]
    # a fine-tuned model of another source model refuses these packs
    other_ft = str(world["root"] / "ft-other")
    run_stage("finetune.py", COMMON + ["--task", "xnli", "--model", world["other"], "--train_file",
                                       world["xnli_train"], "--max_steps", 2, "--output_dir", other_ft])
    with pytest.raises(ConfigError, match="trained for source model"):
        evaluate_pack(other_ft, packs["mini"], examples)


def test_pawsx_and_mlqa_fixtures_fine_tune_and_score(world):
    root = world["root"]
    for task, data, key in (("pawsx", world["paws"], "accuracy"), ("mlqa", world["squad"], "f1")):
        out = str(root / f"ft-{task}")
        run_stage("finetune.py", COMMON + ["--task", task, "--model", world["primary"], "--train_file", data,
                                           "--eval_file", data, "--max_steps", 20, "--lr", 3e-3,
                                           "--output_dir", out])
        meta = json.load(open(os.path.join(out, "finetune.json")))
        spec = task_spec(task)
        result = evaluate_pack(out, "source", load_examples(spec, data))
        assert result[key] == meta["source_score"][key]
        if task == "mlqa":
            assert 0.0 <= result["exact_match"] <= result["f1"] <= 1.0  # fractions, as accuracy is
            # the answer span is learnable from position: 20 steps find most of it
            assert result["f1"] > 0.3, result


def test_minipost_freezes_the_extracted_bottom_and_feeds_step2(world, capsys):
    root = world["root"]
    out = str(root / "minipost")
    run_stage("minipost.py", COMMON + ["--from_pretrained", world["primary"], "--extract_layers", 2,
                                       "--new_layers", 1, "--train_files", world["src"], "--max_steps", 6,
                                       "--lr", 5e-3, "--output_dir", out, "--cache_dir", root / "cache"])
    mini = load_file(os.path.join(out, "mini_model.safetensors"))
    primary = load_pretrained_state_dict(world["primary"])
    for name, tensor in primary.items():
        if name.startswith(("roberta.embeddings.", "roberta.encoder.layer.0.", "roberta.encoder.layer.1.")):
            assert torch.equal(mini[name], tensor), name
    assert "roberta.encoder.layer.2.attention.self.query.weight" in mini  # the new layer
    assert not any(k.startswith("roberta.encoder.layer.3.") for k in mini)
    meta = json.load(open(os.path.join(out, "minipost.json")))
    assert (meta["extract_layers"], meta["new_layers"]) == (2, 1)
    summary = json.load(open(os.path.join(out, "summary.json")))
    assert summary["final_loss"] < 10 and summary["flops_per_step"]["backward_weight"] > 0

    pack = str(root / "pack-minipost")
    run_stage("adapt.py", COMMON + ["--model", world["primary"], "--through", "mini", "--mini_model", out,
                                    "--tokenizer", world["tgt_tok"], "--train_files", world["tgt"],
                                    "--max_steps", 4, "--output_dir", pack, "--cache_dir", root / "cache"])
    _, meta = load_pack(pack, "last")
    assert meta["mini_kind"] == "minipost" and meta["depth"] == 3

    # a MiniPost model is bound to its primary
    from mmadapt.stages import entry

    adapt_main = entry("adapt")
    rc = adapt_main(["--deepspeed_config", ZERO3, "--model", world["other"], "--through", "mini",
                     "--mini_model", out, "--tokenizer", world["tgt_tok"], "--train_files", world["tgt"],
                     "--output_dir", str(root / "refused")])
    assert rc == 2 and not (root / "refused").exists()
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"--mini_model {out} was extracted from another model" in err[0], err
    assert "fix: pass the --model it was built from" in err[0]


def test_bad_inputs_to_the_adaptation_steps(world, tmp_path, capsys):
    from mmadapt.stages import entry

    adapt_main, finetune_main = entry("adapt"), entry("finetune")

    plain = tmp_path / "plain"
    cfg = resolve_model(ModelConfig(model="tiny", hidden_size=32, num_layers=4, num_heads=4, intermediate_size=64,
                                    max_position_embeddings=66, mini_head=False), tokenizer_vocab=60)
    export_hf(MiniJointForMaskedLM(cfg).state_dict(), cfg, str(plain))
    base = ["--deepspeed_config", ZERO3, "--tokenizer", world["tgt_tok"], "--train_files", world["tgt"],
            "--output_dir", str(tmp_path / "out")]
    assert adapt_main(base + ["--model", str(plain), "--through", "mini"]) == 2
    assert "has no mini-model" in capsys.readouterr().err
    assert adapt_main(base + ["--model", world["primary"], "--select_by", "retrieval_top1"]) == 2
    assert "--select_by retrieval_top1 has nothing" in capsys.readouterr().err
    # evaluation inputs are checked before anything is written
    no_tab = tmp_path / "no_tab.tsv"
    no_tab.write_text("one side only\n")
    assert adapt_main(base + ["--model", world["primary"], "--parallel_file", str(no_tab)]) == 2
    assert "needs source<TAB>target" in capsys.readouterr().err
    assert adapt_main(base + ["--model", world["primary"], "--task_models", str(plain),
                              "--task_eval_file", world["xnli_tgt_test"]]) == 2
    assert "no finetune.json" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()

    bad_tok = tmp_path / "bad_tok"
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast
    raw = Tokenizer(models.WordLevel({"[UNK]": 0, "a": 1}, unk_token="[UNK]"))
    raw.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=raw, unk_token="[UNK]").save_pretrained(bad_tok)
    assert adapt_main(["--deepspeed_config", ZERO3, "--model", world["primary"], "--tokenizer", str(bad_tok),
                       "--train_files", world["tgt"], "--output_dir", str(tmp_path / "out")]) == 2
    assert "special token <s>" in capsys.readouterr().err

    ft = ["--deepspeed_config", ZERO3, "--model", world["primary"], "--output_dir", str(tmp_path / "out")]
    cases = [
        ("xnli", [{"premise": "a", "label": 0}], "missing field(s) ['hypothesis']"),
        ("xnli", [{"premise": "a", "hypothesis": "b", "label": 7}], "label 7 is not in xnli's set"),
        ("pawsx", [{"sentence1": "a", "sentence2": "b", "label": "maybe"}], "label 'maybe'"),
        ("mlqa", [{"context": "the cat sat", "question": "who?", "answers": {"text": ["dog"], "answer_start": [4]}}],
         "answer 'dog' is not in the context"),
    ]
    for task, rows, needle in cases:
        path = write_jsonl(tmp_path / f"{task}.jsonl", rows)
        assert finetune_main(ft + ["--task", task, "--train_file", path]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and needle in err[0], err
    good = write_jsonl(tmp_path / "good.jsonl", [{"premise": "a", "hypothesis": "b", "label": 0}])
    assert finetune_main(ft + ["--train_file", good, "--dropout", "1.5"]) == 2
    assert "--dropout 1.5: not a dropout probability" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_pipeline_runs_all_steps_and_skips_complete_ones(world, tmp_path, capsys):
    import yaml

    from mmadapt.pipeline import main as pipeline_main

    cfg = {
        "output_dir": str(tmp_path / "pipe"), "deepspeed_config": ZERO3, "nproc": 1,
        "common": {"max_seq_length": 32, "global_batch_size": 8, "log_every": 2},
        "source": {"model": world["primary"]},
        "task": {"name": "xnli", "train_file": world["xnli_train"], "eval_file": world["xnli_src_test"],
                 "args": {"max_steps": 3}},
        "through": ["mini", "full"],
        "step2": {"max_steps": 3, "cache_dir": str(world["root"] / "cache")},
        "languages": [{"name": "xx", "train_files": [world["tgt"]], "task_eval_file": world["xnli_tgt_test"],
                       "vocab_size": 60}],
    }
    path = tmp_path / "pipe.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert pipeline_main([str(path)]) == 0
    summary = json.load(open(tmp_path / "pipe" / "summary.json"))
    rows = {r["method"]: r for r in summary["results"]}
    assert set(rows) == {"mini", "full"} and all(r["language"] == "xx" for r in rows.values())
    assert rows["mini"]["step2_flops"] < rows["full"]["step2_flops"]
    assert all(0.0 <= r["accuracy"] <= 1.0 for r in rows.values())
    assert "| xx | mini |" in (tmp_path / "pipe" / "summary.md").read_text()

    stamp = os.path.getmtime(tmp_path / "pipe" / "step2-xx-mini" / "summary.json")
    assert pipeline_main([str(path)]) == 0  # everything complete: nothing reruns
    assert os.path.getmtime(tmp_path / "pipe" / "step2-xx-mini" / "summary.json") == stamp

    capsys.readouterr()
    del cfg["task"]
    path.write_text(yaml.safe_dump(cfg))
    assert pipeline_main([str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"pipeline config {path}: missing ['task']; fix: add them" in err[0], err


def test_step2_resume_keeps_the_best_score_and_embeddings(world, tmp_path):
    """A resumed step 2 (mmadapt pipeline resumes on its own) must not take its first evaluation for the
    best: the best score and step travel in the checkpoint. The resumed half runs with a learning rate
    that wrecks the embeddings, so every later evaluation is worse than the best before the stop."""
    out = tmp_path / "pack"
    args = ["--deepspeed_config", os.path.join(REPO, "ds_configs", "dp_cpu.json"), "--max_seq_length", 32,
            "--global_batch_size", 8, "--model", world["primary"], "--through", "mini", "--tokenizer",
            world["tgt_tok"], "--train_files", world["tgt"], "--eval_files", world["tgt"], "--eval_blocks", 8,
            "--select_by", "eval_loss", "--max_steps", 8, "--eval_every", 2, "--save_every", 2,
            "--warmup_steps", 1, "--output_dir", out, "--cache_dir", world["root"] / "cache"]
    run_stage("adapt.py", args + ["--lr", 5e-3, "--stop_at_step", 4])
    best_before = (out / "best_embeddings.safetensors").read_bytes()
    best_step = json.loads((out / "pack.json").read_text())["best_step"]
    run_stage("adapt.py", args + ["--lr", 50.0, "--resume"])
    evals = [json.loads(line) for line in (out / "eval.jsonl").read_text().splitlines()]
    assert [e["step"] for e in evals] == [0, 2, 4, 6, 8]
    losses = {e["step"]: e["eval_loss"] for e in evals}
    assert min(losses[6], losses[8]) > min(losses[s] for s in (0, 2, 4))  # the resumed half only got worse
    summary = json.loads((out / "summary.json").read_text())
    assert summary["best_step"] == best_step == min((s for s in losses if s > 0), key=losses.get) <= 4
    assert summary["best_value"] == pytest.approx(losses[best_step])
    assert (out / "best_embeddings.safetensors").read_bytes() == best_before


def check_task_export(out, finetuned, pack, examples, trust_remote_code=False):
    """An exported task model against mmadapt's: logits to 1e-4 on a padded batch (texts of different
    lengths, so a mean must skip the padding), and pipeline("text-classification") loaded from the directory
    predicts the labels that launchers/evaluate.py's scoring predicts. Returns those predictions."""
    from transformers import AutoModelForSequenceClassification, pipeline

    from mmadapt.tasks import encode_pairs, predict_labels
    from mmadapt.tokenizer import load_tokenizer

    spec, ours, _, meta = load_finetuned(finetuned)
    swap_language(ours, load_pack(pack)[0])
    target_tok = load_tokenizer(os.path.join(pack, "tokenizer"))
    ids, _ = encode_pairs(examples, target_tok, meta["max_seq_length"])
    lengths = ids.ne(1).sum(1)
    assert lengths.min() < lengths.max(), lengths  # some padded, by different amounts
    hf_model = AutoModelForSequenceClassification.from_pretrained(out, trust_remote_code=trust_remote_code).eval()
    with torch.no_grad():
        torch.testing.assert_close(hf_model(input_ids=ids, attention_mask=ids.ne(1).long()).logits, ours.logits(ids),
                                   atol=1e-4, rtol=1e-4)
    _, predicted = predict_labels(ours, target_tok, examples, meta["max_seq_length"])  # what evaluate.py scores
    classify = pipeline("text-classification", model=str(out), trust_remote_code=trust_remote_code, device="cpu")
    if "b" in examples[0]:
        labels = [classify({"text": e["a"], "text_pair": e["b"]})["label"] for e in examples]
    else:
        labels = [r["label"] for r in classify([e["a"] for e in examples])]
    assert labels == [spec.labels[i] for i in predicted.tolist()]
    accuracy = sum(spec.labels[e["label"]] == label for e, label in zip(examples, labels)) / len(examples)
    assert accuracy == pytest.approx(evaluate_pack(finetuned, pack, examples)["accuracy"])
    return hf_model, predicted


def check_mean_pooled_export(out):
    """A mean-pooled export carries its modeling code, and refuses to load without trust_remote_code (rather
    than as transformers' <s>-pooled class, which would predict other labels)."""
    from transformers import AutoModelForSequenceClassification

    config = json.loads((out / "config.json").read_text())
    assert config["architectures"] == ["MeanPooledXLMRobertaForSequenceClassification"]
    assert set(config["auto_map"]) == {"AutoConfig", "AutoModelForSequenceClassification"}
    assert (out / "modeling_mmadapt_pooling.py").is_file()
    with pytest.raises(ValueError, match="trust_remote_code=True"):
        AutoModelForSequenceClassification.from_pretrained(out)


def test_adapted_models_load_in_plain_transformers(world, packs, finetuned, tmp_path):
    """`mmadapt export --finetuned ... --language_pack ...` gives an AutoModelForSequenceClassification and a
    text-classification pipeline that predict what launchers/evaluate.py scores, for <s> pooling (plain
    transformers) and mean pooling (its modeling file, trust_remote_code=True); `--run_dir ... --language_pack`
    gives a fill-mask model whose logits are mmadapt's primary model with the pack swapped in."""
    from transformers import AutoModelForMaskedLM, AutoTokenizer, XLMRobertaForSequenceClassification, pipeline

    from mmadapt.cli import main as cli_main
    from mmadapt.hf_io import load_into, pretrained_model_config

    # cut short by different amounts: whole pairs fill --max_seq_length, and the batch must hold padding
    examples = [{**e, "a": " ".join(e["a"].split()[:2 + i % 4]), "b": " ".join(e["b"].split()[:3])}
                for i, e in enumerate(load_examples(task_spec("xnli"), world["xnli_tgt_test"]))]
    out = tmp_path / "xnli-xx"
    assert cli_main(["export", "--finetuned", finetuned, "--language_pack", packs["mini"],
                     "--output_dir", str(out)]) == 0
    hf_model, _ = check_task_export(out, finetuned, packs["mini"], examples)  # no remote code
    assert type(hf_model) is XLMRobertaForSequenceClassification
    assert "auto_map" not in json.loads((out / "config.json").read_text())
    assert not (out / "modeling_mmadapt_pooling.py").exists()

    mean_ft = tmp_path / "ft-mean"
    run_stage("finetune.py", COMMON + ["--task", "xnli", "--model", world["primary"], "--train_files",
                                       world["xnli_train"], "--max_steps", 2, "--pooling", "mean",
                                       "--output_dir", mean_ft])
    mean_out = tmp_path / "xnli-xx-mean"
    assert cli_main(["export", "--finetuned", str(mean_ft), "--language_pack", packs["mini"],
                     "--output_dir", str(mean_out)]) == 0
    check_mean_pooled_export(mean_out)
    check_task_export(mean_out, str(mean_ft), packs["mini"], examples, trust_remote_code=True)

    mlm_dir = tmp_path / "mlm-xx"
    assert cli_main(["export", "--run_dir", world["primary"], "--language_pack", packs["full"],
                     "--output_dir", str(mlm_dir)]) == 0
    hf_mlm = AutoModelForMaskedLM.from_pretrained(mlm_dir).eval()
    cfg = pretrained_model_config(world["primary"])
    primary = MiniJointForMaskedLM(cfg).eval()
    load_into(primary, load_pretrained_state_dict(world["primary"]))
    swap_language(primary, load_pack(packs["full"])[0])
    tgt_tok = AutoTokenizer.from_pretrained(mlm_dir)
    sentence = open(world["tgt"]).readline().strip().split()
    masked = " ".join(sentence[:2] + [tgt_tok.mask_token] + sentence[3:])
    enc = tgt_tok(masked, return_tensors="pt")
    with torch.no_grad():
        torch.testing.assert_close(hf_mlm(**enc).logits, primary.logits(enc["input_ids"]), atol=1e-4, rtol=1e-4)
    fill = pipeline("fill-mask", model=hf_mlm, tokenizer=tgt_tok, device="cpu")
    assert len(fill(masked)) == 5
