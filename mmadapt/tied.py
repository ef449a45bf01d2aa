"""One gradient buffer for the token matrix that is both the input lookup and the output projection(s).

With plain autograd, a weight used in several places gets one gradient per use and autograd adds them:
the head's projection gives a dense V x h gradient, and the lookup at the bottom gives another dense V x h
(``embedding_backward``) that is added to the first. At the moment of that addition two whole V x h
tensors are alive; with a 250k vocabulary that is 0.5 GiB per copy in bf16 at XLM-R large, 2 GiB at XL
(scale.py measured it: the mini path of XL peaked 1.5x its prediction without a second copy counted).

Here the uses share one buffer per forward pass: the lookup opens an accumulator, every projection that
runs in the same forward adds its gradient into it in place (``addmm`` into the buffer: no second V x h), and the lookup's
backward, which autograd runs after every head's (the heads read states computed from the lookup),
scatters its rows into the buffer and hands it to autograd as the weight's only gradient. ZeRO-3 then sees
one dense gradient, as before, and partitions it. The arithmetic is the same as autograd's (the lookup's
rows skip the padding index, as ``nn.Embedding``'s backward does); only the order of the sums differs.

A projection whose forward runs without an open accumulator (evaluation, a frozen matrix, a lookup run
under ``no_grad``) returns its own gradient as usual. ``MMADAPT_TIED_GRADIENT=autograd`` turns the shared
buffer off (plain ``F.embedding`` / ``F.linear``): the "before" of benchmarks/scale.py's memory figures.
"""

from __future__ import annotations

import os
from typing import Optional

import torch
import torch.nn.functional as F


class _Accumulator:
    """The one V x h gradient of one forward pass."""

    def __init__(self):
        self.buffer: Optional[torch.Tensor] = None
        self.delivered = False


class TiedGradient:
    """Shared by a token embedding and the heads tied to it (a plain attribute: not a module, no state)."""

    def __init__(self):
        self.live: Optional[_Accumulator] = None

    def open(self) -> _Accumulator:
        last = self.live
        if last is not None and last.buffer is not None and not last.delivered:
            # A head's gradient went into the buffer but the lookup's backward never handed it on: the
            # weight would silently miss that gradient. Only a loss that reads a head but not the lookup
            # can do this.
            raise RuntimeError("tied token embedding: a head's gradient of the previous forward was never "
                               "delivered (its loss did not reach the embedding lookup)")
        self.live = _Accumulator()
        return self.live

    def close(self) -> None:
        """A lookup that does not train: no head of this forward may defer to an older accumulator."""
        self.open()
        self.live = None

    def current(self) -> Optional[_Accumulator]:
        acc = self.live
        return acc if acc is not None and not acc.delivered else None


class _Lookup(torch.autograd.Function):
    @staticmethod
    def forward(ctx, ids, weight, padding_idx, acc):
        ctx.save_for_backward(ids)
        ctx.shape, ctx.padding_idx, ctx.acc = weight.shape, padding_idx, acc
        return F.embedding(ids, weight, padding_idx)

    @staticmethod
    def backward(ctx, grad):
        (ids,) = ctx.saved_tensors
        acc = ctx.acc
        buffer = acc.buffer if acc.buffer is not None else grad.new_zeros(ctx.shape)
        acc.buffer, acc.delivered = None, True
        ids, grad = ids.reshape(-1), grad.reshape(-1, grad.shape[-1])
        if ctx.padding_idx is not None:
            keep = ids.ne(ctx.padding_idx)
            ids, grad = ids[keep], grad[keep]
        # Autograd's own order, so that the result is bit for bit the same: the lookup's rows summed per
        # token first (in position order, from zero, as embedding_dense_backward does), then added once to
        # the heads' sum. Only the looked-up rows are touched.
        rows, where = torch.unique(ids, return_inverse=True)
        summed = grad.new_zeros(len(rows), grad.shape[-1]).index_add_(0, where, grad)
        buffer.index_add_(0, rows, summed.to(buffer.dtype))
        return None, buffer, None, None


class _Projection(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, acc):
        ctx.save_for_backward(x, weight)
        ctx.acc, ctx.has_bias = acc, bias is not None
        return F.linear(x, weight, bias)

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = grad @ weight
        flat_grad, flat_x = grad.reshape(-1, grad.shape[-1]), x.reshape(-1, x.shape[-1])
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = flat_grad.sum(0)
        if ctx.needs_input_grad[1]:
            acc = ctx.acc
            if acc is not None and not acc.delivered:  # into the one buffer the lookup hands on
                if acc.buffer is None:
                    acc.buffer = flat_grad.t() @ flat_x
                else:
                    # addmm with out= (not addmm_): in place as well, and counted by FlopCounterMode
                    torch.addmm(acc.buffer, flat_grad.t(), flat_x, out=acc.buffer)
            else:
                grad_w = flat_grad.t() @ flat_x
        return grad_x, grad_w, grad_b, None


def _shared_buffer() -> bool:
    value = os.environ.get("MMADAPT_TIED_GRADIENT", "shared")
    if value not in ("shared", "autograd"):  # a typo must not silently measure the other one
        raise ValueError(f"MMADAPT_TIED_GRADIENT={value!r}; fix: shared (the default) or autograd")
    return value == "shared"


def lookup(ids: torch.Tensor, weight: torch.Tensor, padding_idx: Optional[int], tied: TiedGradient) -> torch.Tensor:
    """``F.embedding``; when the weight trains, it opens the forward's shared gradient buffer."""
    if torch.is_grad_enabled() and weight.requires_grad and _shared_buffer():
        return _Lookup.apply(ids, weight, padding_idx, tied.open())
    tied.close()
    return F.embedding(ids, weight, padding_idx)


def projection(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor], tied: TiedGradient) -> torch.Tensor:
    """``F.linear`` onto the vocabulary; its weight gradient goes into the open buffer when there is one."""
    acc = tied.current()
    if torch.is_grad_enabled() and weight.requires_grad and acc is not None:
        return _Projection.apply(x, weight, bias, acc)
    return F.linear(x, weight, bias)
