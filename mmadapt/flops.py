"""Analytic FLOPs of one training step, by stage and path, counted the way the hardware pays them.

Counted: matrix multiplications (2 FLOPs per multiply-add); elementwise work (LayerNorm, GELU, softmax,
embedding lookups) is left out, as in the usual MFU convention and in torch's FlopCounterMode.

Per token, one encoder layer's forward is 2 x (4h^2 + 2hf) for its six projections and 2 x 2sh for the
attention scores and context. The MLM head costs 2 x (h^2 + hV) per *predicted* token, since logits
are computed only at masked positions. Backward splits in two: input gradients (about one forward of
the linear layers, two of attention, whose QK^T and PV products each need both operands' gradients),
needed by every component above the lowest trainable one; and weight gradients (one forward of the
linear layers), needed only where weights train. A layer below every trainable parameter has no
backward at all. The tied vocabulary projection's weight gradient is paid when the embeddings train.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from .config import ModelConfig


@dataclass
class StepFlops:
    forward: float = 0.0
    backward_input: float = 0.0
    backward_weight: float = 0.0
    recompute: float = 0.0  # activation checkpointing's second forward, reported apart

    @property
    def total(self) -> float:
        return self.forward + self.backward_input + self.backward_weight + self.recompute

    def __add__(self, other: "StepFlops") -> "StepFlops":
        return StepFlops(*(a + b for a, b in zip(asdict(self).values(), asdict(other).values())))

    def scaled(self, factor: float) -> "StepFlops":
        return StepFlops(*(v * factor for v in asdict(self).values()))

    def as_dict(self) -> dict:
        return {**asdict(self), "total": self.total}


def layer_forward(cfg: ModelConfig, seq_len: int, tokens: float) -> tuple[float, float]:
    """(linear, attention) forward FLOPs of one encoder layer over ``tokens`` tokens."""
    h, f = cfg.hidden_size, cfg.intermediate_size
    linear = 2.0 * tokens * (4 * h * h + 2 * h * f)
    attention = 2.0 * 2 * tokens * seq_len * h
    return linear, attention


def head_forward(cfg: ModelConfig, predicted: float) -> tuple[float, float]:
    """(dense, vocabulary projection) forward FLOPs of an MLM head over ``predicted`` positions."""
    h = cfg.hidden_size
    return 2.0 * predicted * h * h, 2.0 * predicted * h * cfg.vocab_size


def step_flops(cfg: ModelConfig, seq_len: int, sequences: float, predicted: float, depth: int,
               head_layers: list, trainable_layers: set, embeddings_trainable: bool,
               heads_trainable: bool, checkpointing: bool = False) -> StepFlops:
    """FLOPs of forward + backward through embeddings, layers 1..depth and heads after ``head_layers``.

    ``trainable_layers`` holds 1-based layer numbers; ``predicted`` is the number of masked positions
    (per head); ``heads_trainable`` refers to the heads' dense layers (their projection is the
    embedding matrix, trained with ``embeddings_trainable``).
    """
    tokens = sequences * seq_len
    out = StepFlops()

    def below_trains(layer: int) -> bool:  # anything feeding the output of `layer` trains
        return embeddings_trainable or any(i <= layer for i in trainable_layers)

    for i in range(1, depth + 1):
        linear, attention = layer_forward(cfg, seq_len, tokens)
        out.forward += linear + attention
        if below_trains(i - 1):
            out.backward_input += linear + 2 * attention
            if checkpointing:
                out.recompute += linear + attention
        if i in trainable_layers:
            out.backward_weight += linear
    for j in head_layers:
        dense, projection = head_forward(cfg, predicted)
        out.forward += dense + projection
        if below_trains(j):
            out.backward_input += dense + projection
        if heads_trainable:
            out.backward_weight += dense
        if embeddings_trainable:
            out.backward_weight += projection
    return out


def pretrain_step_flops(cfg: ModelConfig, seq_len: int, sequences: float, predicted: float) -> StepFlops:
    """MLM or MiniJoint pretraining: everything trains; the mini head adds one head after layer k."""
    heads = [cfg.num_layers] + ([cfg.mini_layers] if cfg.mini_head else [])
    return step_flops(cfg, seq_len, sequences, predicted, cfg.num_layers, heads,
                      set(range(1, cfg.num_layers + 1)), True, True, cfg.activation_checkpointing)


def adapt_step_flops(cfg: ModelConfig, seq_len: int, sequences: float, predicted: float,
                     through: str) -> StepFlops:
    """Step 2: only the embeddings (and their tied projection) train, through the mini or full model."""
    depth = cfg.mini_layers if through == "mini" else cfg.num_layers
    return step_flops(cfg, seq_len, sequences, predicted, depth, [depth], set(), True, False,
                      cfg.activation_checkpointing)
