"""Step 2 through the mini-model reads only what it trains through: at fixed k its peak memory does not
grow with the primary model's depth, and what it loads is the checkpoint's weights."""

import json
import os
import subprocess
import sys

import pytest
import torch

from mmadapt.config import ModelConfig, resolve_model
from mmadapt.hf_io import export_hf, from_hf_state_dict
from mmadapt.model import MiniJointForMaskedLM
from mmadapt.packs import checksum

from conftest import REPO

pytestmark = pytest.mark.slow


def peak_rss_of_step2(tmp_path, text, tok, layers: int) -> tuple:
    cfg = resolve_model(ModelConfig(model="tiny", vocab_size=20000, hidden_size=512, num_layers=layers, num_heads=8,
                                    intermediate_size=2048, max_position_embeddings=40, mini_layers=1))
    torch.manual_seed(layers)
    primary = tmp_path / f"primary-{layers}"
    export_hf(MiniJointForMaskedLM(cfg).state_dict(), cfg, str(primary))
    out = tmp_path / f"step2-{layers}"
    args = ["--deepspeed_config", os.path.join(REPO, "ds_configs", "dp_cpu.json"), "--model", primary,
            "--through", "mini", "--tokenizer", tok, "--train_files", text, "--max_seq_length", 32,
            "--global_batch_size", 4, "--max_steps", 2, "--log_every", 1,
            "--output_dir", out, "--cache_dir", tmp_path / "cache"]
    proc = subprocess.run([sys.executable, os.path.join(REPO, "launchers", "adapt.py"), *map(str, args)],
                          capture_output=True, text=True, timeout=600, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.load(open(out / "summary.json"))
    return summary, primary


def test_mini_step2_memory_does_not_grow_with_depth_and_loads_the_checkpoint(tmp_path, text_and_tokenizer):
    text, tok, _ = text_and_tokenizer
    shallow, _ = peak_rss_of_step2(tmp_path, text, tok, 2)
    deep, deep_dir = peak_rss_of_step2(tmp_path, text, tok, 26)
    weights = {d: os.path.getsize(tmp_path / f"primary-{d}" / "model.safetensors") for d in (2, 26)}
    assert weights[26] - weights[2] > 250e6  # 24 more layers of 12.6 MB: what a full load would add
    rss = [s["peak_memory_bytes_per_rank"][0] for s in (shallow, deep)]
    assert abs(rss[1] - rss[0]) < 50e6, rss
    assert deep["parameters"] == shallow["parameters"]  # embeddings + 1 layer + mini head
    # what step 2 loaded is the checkpoint's: its frozen-weight checksum equals one over a plain
    # transformers load of the same tensors
    from transformers import AutoModelForMaskedLM
    from safetensors.torch import load_file

    eager = from_hf_state_dict(AutoModelForMaskedLM.from_pretrained(deep_dir).state_dict())
    eager.update({f"mini_head.{k}": v for k, v in load_file(deep_dir / "mini_head.safetensors").items()})
    mini = {("head." + k[len("mini_head."):] if k.startswith("mini_head.") else k): v for k, v in eager.items()
            if k.startswith(("roberta.embeddings.", "roberta.encoder.layer.0.", "mini_head."))}
    frozen = [k for k in mini if not k.endswith(("word_embeddings.weight", "decoder_weight", "head.bias"))]
    assert deep["frozen_checksum_before"] == checksum(mini, frozen)
