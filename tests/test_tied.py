"""The tied token matrix's one gradient buffer (mmadapt/tied.py) gives autograd's gradient."""

import pytest
import torch
import torch.nn.functional as F

from mmadapt.model import MiniJointForMaskedLM, MiniModel
from mmadapt.tied import TiedGradient, lookup, projection

from conftest import tiny_config
from test_model import _batch


def test_hand_made_gradient_lookup_rows_skip_padding_and_projection_adds_in():
    # loss = sum(W[ids]) + sum(x @ W.T): d/dW[v] = (times v occurs in ids, pad excluded) + sum of x's rows
    tied, pad = TiedGradient(), 1
    w = torch.zeros(4, 2, requires_grad=True)
    ids = torch.tensor([[0, 2, 2, 1], [3, 1, 1, 2]])
    x0 = lookup(ids, w, pad, tied)
    x = torch.tensor([[1.0, 2.0], [3.0, -1.0]])
    loss = x0.sum() + projection(x + 0 * x0[:, 0], w, None, tied).sum()
    loss.backward()
    assert tied.live.delivered  # the projection's gradient went through the lookup's buffer
    counts = torch.tensor([1.0, 0.0, 3.0, 1.0])  # id 1 is the pad: its lookups give nothing
    assert torch.equal(w.grad, counts[:, None] + torch.tensor([4.0, 1.0])[None, :])


def _grads_with_plain_autograd(model, ids, labels) -> dict:
    """The same weights with the heads' projections and the lookup as plain F.linear / F.embedding:
    autograd's own sum over the tied uses."""
    model.zero_grad()
    emb = model.roberta.embeddings.word_embeddings
    for head in {m for m in model.modules() if hasattr(m, "decoder_weight")}:
        head.forward = (lambda h: lambda f: F.linear(h.layer_norm(F.gelu(h.dense(f))), h.decoder_weight, h.bias))(head)
    emb.forward = lambda i: F.embedding(i, emb.weight, emb.padding_idx)
    model(ids, labels).loss.backward()
    return {n: p.grad for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_minijoint_gradients_equal_plain_autograd(dtype):
    cfg = tiny_config(mini_layers=1)
    model = MiniJointForMaskedLM(cfg).to(dtype)
    ids, labels = _batch(cfg)
    model(ids, labels).loss.backward()
    ours = {n: p.grad.clone() for n, p in model.named_parameters()}
    assert model.roberta.embeddings.word_embeddings.tied.live.delivered  # both heads deferred to the lookup
    plain = _grads_with_plain_autograd(model, ids, labels)
    assert set(plain) == set(ours)
    for n in ours:
        if dtype == torch.float32:  # the same sums in the same order: bit for bit (a rerun's figures to the digit)
            assert torch.equal(ours[n], plain[n]), n
        else:
            torch.testing.assert_close(ours[n].float(), plain[n].float(), rtol=2e-2, atol=2e-3, msg=n)
    assert ours["roberta.embeddings.word_embeddings.weight"][cfg.pad_token_id].abs().sum() > 0  # heads reach it


def test_step2_mini_model_and_a_frozen_matrix():
    cfg = tiny_config(mini_layers=1)
    model = MiniModel(cfg, depth=2)
    ids, labels = _batch(cfg)
    model(ids, labels).loss.backward()
    ours = model.roberta.embeddings.word_embeddings.weight.grad.clone()
    plain = _grads_with_plain_autograd(model, ids, labels)
    assert torch.equal(ours, plain["roberta.embeddings.word_embeddings.weight"])

    frozen = MiniModel(cfg, depth=1)  # a frozen matrix: nothing deferred, the rest still trains
    frozen.roberta.embeddings.word_embeddings.weight.requires_grad_(False)
    frozen(ids, labels).loss.backward()
    assert frozen.roberta.embeddings.word_embeddings.weight.grad is None
    assert frozen.head.dense.weight.grad.abs().sum() > 0


def test_a_head_gradient_that_never_reaches_the_lookup_is_an_error_not_a_loss():
    tied = TiedGradient()
    w = torch.randn(5, 3, requires_grad=True)
    lookup(torch.tensor([[0, 2]]), w, None, tied)  # opened, but the loss below does not read it
    projection(torch.randn(2, 3), w, None, tied).sum().backward()
    with pytest.raises(RuntimeError, match="never delivered"):
        lookup(torch.tensor([[0, 2]]), w, None, tied)


def test_without_grad_nothing_is_deferred():
    tied = TiedGradient()
    w = torch.randn(5, 3, requires_grad=True)
    with torch.no_grad():
        lookup(torch.tensor([[0, 2]]), w, None, tied)
    x = torch.randn(2, 3)
    projection(x, w, None, tied).sum().backward()  # a head alone: its own gradient, at once
    assert torch.allclose(w.grad, x.sum(0).expand(5, 3))


def test_the_switch_back_to_autograd_and_a_misspelt_value(monkeypatch):
    tied = TiedGradient()
    w = torch.randn(5, 3, requires_grad=True)
    monkeypatch.setenv("MMADAPT_TIED_GRADIENT", "autograd")
    lookup(torch.tensor([[0, 2]]), w, None, tied)
    assert tied.live is None  # plain F.embedding: nothing opened
    monkeypatch.setenv("MMADAPT_TIED_GRADIENT", "autograde")
    with pytest.raises(ValueError, match="MMADAPT_TIED_GRADIENT='autograde'; fix: shared"):
        lookup(torch.tensor([[0, 2]]), w, None, tied)
