"""The GPU paths, run when a CUDA GPU is there (`pytest -m gpu`; benchmarks/gpu_check.sh runs them first):
bf16 ZeRO-3 training with FusedAdam on NCCL (ds_configs/zero3.json), the same with the optimizer offloaded
to the CPU (ds_configs/zero3_offload.json), and step 2 through the mini-model on the GPU. The MLQA span
mask on the device is tests/test_qa_scoring.py::test_qa_score_on_the_device."""

import json
import os

import pytest
import torch

from test_launcher_zero3 import assert_losses_fall, launch, metrics

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


def _common(text, tok_dir, root, config):
    return ["--deepspeed_config", config, "--model", "tiny", "--mini_layers", "2", "--train_files", text,
            "--tokenizer", tok_dir, "--max_seq_length", "32", "--global_batch_size", "16", "--max_steps", "40",
            "--log_every", "1", "--lr", "2e-3", "--warmup_steps", "4", "--cache_dir", str(root / "cache")]


@pytest.mark.parametrize("config, optimizer", [("ds_configs/zero3.json", "FusedAdam"),
                                               ("ds_configs/zero3_offload.json", "DeepSpeedCPUAdam")])
def test_bf16_zero3_trains_on_the_gpu(tmp_path, text_and_tokenizer, config, optimizer):
    text, tok_dir, _ = text_and_tokenizer
    out = str(tmp_path / "run")
    launch(_common(text, tok_dir, tmp_path, config) + ["--output_dir", out], nproc=1)
    assert_losses_fall(metrics(out))
    with open(os.path.join(out, "summary.json")) as fh:
        summary = json.load(fh)
    assert summary["zero_stage"] == 3 and summary["optimizer"] == optimizer
    assert summary["peak_memory_bytes_per_rank"][0] > 0  # device memory, read from CUDA


def test_step2_through_the_mini_model_on_the_gpu(tmp_path, text_and_tokenizer):
    from test_launcher_zero3 import REPO

    text, tok_dir, _ = text_and_tokenizer
    src = str(tmp_path / "src")
    launch(_common(text, tok_dir, tmp_path, "ds_configs/zero3.json") + ["--output_dir", src], nproc=1)
    pack = str(tmp_path / "pack")
    adapt = os.path.join(REPO, "launchers", "adapt.py")
    launch(["--deepspeed_config", "ds_configs/zero3.json", "--model", os.path.join(src, "hf"), "--through", "mini",
            "--tokenizer", tok_dir, "--train_files", text, "--eval_files", text, "--eval_every", "10",
            "--max_seq_length", "32", "--global_batch_size", "16", "--max_steps", "20", "--lr", "5e-3",
            "--output_dir", pack, "--cache_dir", str(tmp_path / "cache")], nproc=1, launcher=adapt)
    with open(os.path.join(pack, "summary.json")) as fh:
        summary = json.load(fh)
    assert summary["optimizer"] == "FusedAdam" and summary["mini_kind"] == "minijoint"
    evals = [json.loads(line) for line in open(os.path.join(pack, "eval.jsonl"))]
    assert evals[-1]["eval_loss"] < evals[0]["eval_loss"]
