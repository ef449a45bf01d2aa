"""Real 2-rank ZeRO-3 runs through the `deepspeed` launcher on CPU (gloo).

One module-scoped set of runs serves several checks: losses fall, each rank holds half the
parameters, an interrupted-and-resumed run matches the uninterrupted one step for step, and the
consolidated export loads in transformers.
"""

import json
import os
import subprocess
import sys

import pytest
import torch

from mmadapt.launch import free_port
from mmadapt.masking import Masker

from conftest import REPO

pytestmark = pytest.mark.slow

LAUNCHER = os.path.join(REPO, "launchers", "minijoint.py")
DEEPSPEED = os.path.join(os.path.dirname(sys.executable), "deepspeed")
STEPS = 40


_free_port = free_port  # the one helper (mmadapt/launch.py); test_failures and test_multinode import this name


def launch(args, nproc=2, timeout=600, launcher=LAUNCHER):
    cmd = [DEEPSPEED, "--num_gpus", str(nproc), "--master_port", str(_free_port()), launcher, *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert "terminate called" not in proc.stderr
    return proc


def metrics(out_dir):
    with open(os.path.join(out_dir, "metrics.jsonl")) as fh:
        return [json.loads(line) for line in fh]


@pytest.fixture(scope="module")
def runs(tmp_path_factory, text_and_tokenizer):
    text, tok_dir, _ = text_and_tokenizer
    root = tmp_path_factory.mktemp("zero3")
    common = ["--deepspeed_config", "ds_configs/zero3_cpu.json", "--model", "tiny", "--mini_layers", "2",
              "--train_files", text, "--tokenizer", tok_dir, "--max_seq_length", "32",
              "--global_batch_size", "16", "--micro_batch_size", "4", "--max_steps", str(STEPS),
              "--log_every", "1", "--lr", "2e-3", "--warmup_steps", "4", "--cache_dir", str(root / "cache"),
              "--activation_checkpointing"]
    full, part = str(root / "full"), str(root / "part")
    launch(common + ["--output_dir", full])
    launch(common + ["--output_dir", part, "--stop_at_step", str(STEPS // 2), "--no_export_hf"])
    first_half = metrics(part)
    resumed = launch(common + ["--output_dir", part, "--resume"])
    return {"full": full, "part": part, "first_half": first_half, "resumed_log": resumed.stdout, "common": common,
            "root": root}


def assert_losses_fall(m):
    for key in ("loss", "mini_loss"):
        start = sum(r[key] for r in m[:5]) / 5
        end = sum(r[key] for r in m[-5:]) / 5
        assert end < start - 0.3, (key, start, end)


def test_primary_and_mini_losses_fall(runs):
    m = metrics(runs["full"])
    assert [r["step"] for r in m] == list(range(1, STEPS + 1))
    assert_losses_fall(m)
    assert all(r["tokens_per_s"] > 0 and r["flops"] > 0 for r in m)


def test_each_rank_holds_about_half_of_the_parameters(runs):
    summary = json.load(open(os.path.join(runs["full"], "summary.json")))
    full, per_rank = summary["parameters"], summary["parameters_per_rank"]
    assert summary["zero_stage"] == 3 and len(per_rank) == 2
    assert sum(per_rank) >= full
    assert all(0.45 * full <= n <= 0.55 * full for n in per_rank), (full, per_rank)


def test_resumed_run_matches_uninterrupted_step_for_step(runs):
    full = metrics(runs["full"])
    part = metrics(runs["part"])
    assert "resumed from step20 at step 20" in runs["resumed_log"]
    assert [r["step"] for r in part] == list(range(1, STEPS + 1))
    assert len(runs["first_half"]) == STEPS // 2
    for a, b in zip(full, part):
        assert a["step"] == b["step"]
        for key in ("loss", "mini_loss", "lr"):
            assert a[key] == pytest.approx(b[key], rel=1e-5, abs=1e-7), (a["step"], key, a[key], b[key])
    ckpt = os.path.join(runs["part"], "checkpoints")
    assert open(os.path.join(ckpt, "latest")).read() == f"step{STEPS}"
    assert not [d for d in os.listdir(ckpt) if d.endswith(".partial")]


def test_export_is_the_trained_model_and_loads_in_transformers(runs, text_and_tokenizer):
    from transformers import AutoModelForMaskedLM, AutoTokenizer, XLMRobertaForMaskedLM

    _, _, tok = text_and_tokenizer
    hf_dir = os.path.join(runs["full"], "hf")
    trained = AutoModelForMaskedLM.from_pretrained(hf_dir).eval()
    assert AutoTokenizer.from_pretrained(hf_dir).get_vocab() == tok.get_vocab()
    fresh = XLMRobertaForMaskedLM(trained.config).eval()
    text, _, _ = text_and_tokenizer
    lines = open(text).read().splitlines()[:64]
    enc = tok(lines, return_tensors="pt", padding=True)
    inputs, labels = Masker(tok)(enc["input_ids"], torch.Generator().manual_seed(0))
    with torch.no_grad():
        loss_trained = trained(input_ids=inputs, attention_mask=enc["attention_mask"], labels=labels).loss.item()
        loss_fresh = fresh(input_ids=inputs, attention_mask=enc["attention_mask"], labels=labels).loss.item()
    final_train_loss = metrics(runs["full"])[-1]["loss"]
    assert loss_trained < loss_fresh - 0.3, (loss_trained, loss_fresh)
    assert abs(loss_trained - final_train_loss) < 0.3, (loss_trained, final_train_loss)
    assert os.path.isfile(os.path.join(hf_dir, "mini_head.safetensors"))


def test_bf16_cpu_config_trains_under_zero3(runs):
    """The shipped bf16 CPU config (what fits XLM-R sizes on 24 GiB): the same job as the fp32 run, in bf16
    (its first loss differs from fp32's by rounding only), and it learns."""
    common = list(runs["common"])
    common[common.index("ds_configs/zero3_cpu.json")] = "zero3_cpu_bf16.json"  # a shipped config by name
    out = str(runs["root"] / "bf16")
    launch(common + ["--output_dir", out, "--no_export_hf"])
    m, fp32 = metrics(out), metrics(runs["full"])
    assert 0 < abs(m[0]["loss"] - fp32[0]["loss"]) < 0.05, (m[0]["loss"], fp32[0]["loss"])
    assert_losses_fall(m)
    with open(os.path.join(out, "summary.json")) as fh:
        summary = json.load(fh)
    assert summary["zero_stage"] == 3 and summary["optimizer"] == "FusedAdam"  # the CPU accelerator's
    assert summary["malloc_mmap_threshold"] is None  # glibc's own rule unless MMADAPT_MALLOC_MMAP_THRESHOLD asks
    # memory apart: the runtime before the model, then loading, then training from a reset high-water mark
    before, setup, training = (summary[k] for k in ("resident_before_model_bytes_per_rank",
                                                    "setup_peak_memory_bytes_per_rank",
                                                    "training_peak_memory_bytes_per_rank"))
    assert summary["training_peak_is_apart"] and len(training) == 2
    assert all(0 < b <= s for b, s in zip(before, setup))
    assert all(p >= max(s, t) for p, s, t in zip(summary["peak_memory_bytes_per_rank"], setup, training))
