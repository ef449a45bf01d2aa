"""Reading, packing and sharding training text."""

import json

import pytest
import torch

from mmadapt.data import PACK_BATCH, BatchPlan, build_blocks, check_text_file, iter_texts, pack_blocks
from mmadapt.errors import ConfigError


def test_pack_blocks_cuts_fixed_length_and_drops_the_tail():
    out = pack_blocks({"input_ids": [[0, 5, 6, 2], [0, 7, 2], [0, 8, 9, 10, 2]]}, 5)
    assert out["input_ids"] == [[0, 5, 6, 2, 0], [7, 2, 0, 8, 9]]


def test_batches_do_not_overlap_across_ranks_and_are_deterministic():
    plan = BatchPlan(num_blocks=103, global_batch=12, micro_batch=3, world_size=2, seed=4)
    accum = 12 // (3 * 2)
    for step in range(plan.steps_per_epoch):
        parts = [plan.indices(step, m, r) for m in range(accum) for r in range(2)]
        flat = torch.cat(parts)
        assert len(flat) == 12 and len(set(flat.tolist())) == 12
    epoch = torch.cat([plan.indices(s, m, r) for s in range(plan.steps_per_epoch)
                       for m in range(accum) for r in range(2)])
    assert len(set(epoch.tolist())) == len(epoch), "a block seen twice within an epoch"
    again = BatchPlan(103, 12, 3, 2, 4)
    assert torch.equal(again.indices(5, 1, 1), plan.indices(5, 1, 1))
    assert not torch.equal(plan.indices(0, 0, 0), plan.indices(plan.steps_per_epoch, 0, 0))


def test_too_little_data_for_one_batch_is_refused():
    with pytest.raises(ConfigError, match="fewer than one global batch"):
        BatchPlan(num_blocks=10, global_batch=16, micro_batch=8, world_size=2, seed=0)


def test_blocks_from_txt_and_jsonl_are_cached(tmp_path, text_and_tokenizer):
    text, _, tok = text_and_tokenizer
    jl = tmp_path / "d.jsonl"
    jl.write_text("\n".join(json.dumps({"text": f"the cat sees the bird {i}"}) for i in range(50)))
    blocks = build_blocks(tok, 32, [text, str(jl)], cache_dir=str(tmp_path / "cache"))
    assert blocks[0]["input_ids"].shape == (32,) and blocks[0]["input_ids"][0] == tok.bos_token_id
    texts = list(iter_texts([text, str(jl)]))
    n_tokens = sum(len(tok(t)["input_ids"]) for t in texts)
    # each packing batch of PACK_BATCH texts drops its own tail of < 32 tokens
    assert 0 <= n_tokens // 32 - len(blocks) <= -(-len(texts) // PACK_BATCH)
    cached = list((tmp_path / "cache" / "blocks").iterdir())
    assert len(cached) == 1
    again = build_blocks(tok, 32, [text, str(jl)], cache_dir=str(tmp_path / "cache"))
    assert torch.equal(again[:]["input_ids"], blocks[:]["input_ids"])


@pytest.mark.parametrize("content,match", [
    (None, "not found"),
    (b"  \n\n", "empty"),
    (b"fine\n\xff\xfe broken\n", "not UTF-8 at byte 5"),
])
def test_bad_text_files(tmp_path, content, match):
    path = tmp_path / "f.txt"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ConfigError, match=match):
        check_text_file(str(path))


def test_jsonl_without_the_text_field(tmp_path):
    path = tmp_path / "f.jsonl"
    path.write_text('{"body": "x"}\n')
    with pytest.raises(ConfigError, match=r"f.jsonl:1: no field 'text'"):
        check_text_file(str(path))


def test_expected_predicted_tokens_leave_out_special_and_padding_tokens(text_and_tokenizer, tmp_path):
    """The FLOP formulas' head token count is what the masker can pick: never <s>, </s> or padding."""
    import torch

    from mmadapt.data import build_blocks, expected_predicted_tokens
    from mmadapt.masking import Masker

    text, _, tok = text_and_tokenizer
    blocks = build_blocks(tok, 32, [text], cache_dir=str(tmp_path))
    ids = blocks[:]["input_ids"]
    special = torch.isin(ids, torch.tensor(tok.all_special_ids))
    assert special.any()  # each sentence brings <s> and </s>: batch x length x p would count them
    expected = expected_predicted_tokens(blocks, tok, 0.15)
    assert expected == pytest.approx(0.15 * float((~special).sum()) / len(ids))
    assert expected < 0.15 * ids.shape[1]
    masker, g = Masker(tok, 0.15), torch.Generator().manual_seed(0)
    chosen = sum(int(masker(ids, g)[1].ne(-100).sum()) for _ in range(20)) / (20 * len(ids))
    assert chosen == pytest.approx(expected, rel=0.05)  # what masking really predicts


def test_the_attention_path_counted_is_the_one_that_runs():
    from mmadapt.config import ModelConfig
    from mmadapt.flops import fused_attention_runs

    assert fused_attention_runs(ModelConfig(attention_dropout=0.0))
    assert not fused_attention_runs(ModelConfig(attention_dropout=0.1))  # CPU: the math path with dropout
