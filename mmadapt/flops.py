"""Analytic FLOPs of one training step, by stage and path, counted the way the hardware pays them.

Counted: matrix multiplications (2 FLOPs per multiply-add); elementwise work (LayerNorm, GELU, softmax,
embedding lookups, bias gradients) is left out, as in the usual MFU convention and in torch's
FlopCounterMode, against which tests/test_flops.py checks every formula here on real training steps.

Per token, one encoder layer's forward is 2 x (4h^2 + 2hf) for its six projections and 2 x 2sh for the
attention scores and context. The MLM head costs 2 x (h^2 + hV) per *predicted* token, since logits
are computed only at masked positions. Backward splits in two:

- input gradients: about one forward of the linear layers, and for attention (no weights) the
  gradients of QK^T and PV with respect to both operands: two forwards, plus half a forward when a fused
  kernel (flash / memory-efficient, what ``scaled_dot_product_attention`` runs on GPU and on CPU without
  attention dropout) recomputes the scores instead of storing them. They are needed wherever a gradient
  must flow: in every layer above the lowest trainable parameter, and inside that lowest trainable layer
  itself except for the Q, K, V projections' input gradients (nothing below wants them);
- weight gradients: one forward of the linear layers, only where weights train. The tied vocabulary
  projection's weight gradient is paid when the token embeddings train.

A layer below every trainable parameter has no backward at all. Activation checkpointing reruns the
forward of every layer that has a backward; that second forward is reported apart (``recompute``).

Measure a step (the tests and ``benchmarks/`` do): ``measure_step_flops(lambda: model(ids, labels).loss)``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable, Optional

from .config import ModelConfig


@dataclass
class StepFlops:
    forward: float = 0.0
    backward_input: float = 0.0
    backward_weight: float = 0.0
    recompute: float = 0.0  # activation checkpointing's second forward, reported apart

    @property
    def backward(self) -> float:
        return self.backward_input + self.backward_weight

    @property
    def total(self) -> float:
        return self.forward + self.backward_input + self.backward_weight + self.recompute

    def __add__(self, other: "StepFlops") -> "StepFlops":
        return StepFlops(*(a + b for a, b in zip(asdict(self).values(), asdict(other).values())))

    def as_dict(self) -> dict:
        return {**asdict(self), "total": self.total}


def layer_forward(cfg: ModelConfig, seq_len: int, tokens: float) -> tuple[float, float]:
    """(linear, attention) forward FLOPs of one encoder layer over ``tokens`` tokens."""
    h, f = cfg.hidden_size, cfg.intermediate_size
    linear = 2.0 * tokens * (4 * h * h + 2 * h * f)
    attention = 2.0 * 2 * tokens * seq_len * h
    return linear, attention


def qkv_input_grad(cfg: ModelConfig, tokens: float) -> float:
    """Input-gradient FLOPs of a layer's Q, K and V projections: skipped when nothing below trains."""
    return 2.0 * tokens * 3 * cfg.hidden_size * cfg.hidden_size


def attention_backward(attention_forward: float, fused_attention: bool) -> float:
    # dScores = dO V^T, dV = P^T dO, dQ = dS K, dK = dS^T Q: twice the forward's QK^T and PV. A fused
    # kernel also recomputes QK^T from the saved log-sum-exp, which the math path kept in memory.
    return attention_forward * (2.5 if fused_attention else 2.0)


def head_forward(cfg: ModelConfig, predicted: float) -> tuple[float, float]:
    """(dense, vocabulary projection) forward FLOPs of an MLM head over ``predicted`` positions."""
    h = cfg.hidden_size
    return 2.0 * predicted * h * h, 2.0 * predicted * h * cfg.vocab_size


def step_flops(cfg: ModelConfig, seq_len: int, sequences: float, predicted: float, depth: int,
               head_layers: list, trainable_layers: set, embeddings_trainable: bool,
               heads_trainable: bool, checkpointing: bool = False,
               fused_attention: bool = True) -> StepFlops:
    """FLOPs of forward + backward through embeddings, layers 1..depth and MLM heads after ``head_layers``.

    ``trainable_layers`` holds 1-based layer numbers; ``predicted`` is the number of masked positions
    (per head); ``embeddings_trainable`` means the token embeddings, and with them the heads' tied
    projection, train; ``heads_trainable`` refers to the heads' dense layers (and LayerNorm, bias).
    ``fused_attention``: the attention kernel recomputes its scores in backward (see the module doc).
    """
    tokens = sequences * seq_len
    out = StepFlops()

    def trains_at_or_below(layer: int) -> bool:  # layer 0 is the embeddings
        return embeddings_trainable or any(i <= layer for i in trainable_layers)

    for i in range(1, depth + 1):
        linear, attention = layer_forward(cfg, seq_len, tokens)
        out.forward += linear + attention
        input_grad_needed = trains_at_or_below(i - 1)  # something below trains: it wants our input grad
        if not (input_grad_needed or i in trainable_layers):
            continue  # frozen and below everything trainable: no backward, no recompute
        out.backward_input += linear + attention_backward(attention, fused_attention)
        if not input_grad_needed:
            out.backward_input -= qkv_input_grad(cfg, tokens)
        if i in trainable_layers:
            out.backward_weight += linear
        if checkpointing:
            out.recompute += linear + attention
    for j in head_layers:
        dense, projection = head_forward(cfg, predicted)
        out.forward += dense + projection
        if trains_at_or_below(j) or heads_trainable:
            out.backward_input += projection  # the gradient reaches the head's own trainable weights
        if trains_at_or_below(j):
            out.backward_input += dense
        if heads_trainable:
            out.backward_weight += dense
        if embeddings_trainable:
            out.backward_weight += projection
    return out


def pretrain_step_flops(cfg: ModelConfig, seq_len: int, sequences: float, predicted: float,
                        fused_attention: bool = True) -> StepFlops:
    """MLM or MiniJoint pretraining: everything trains; the mini head adds one head after layer k."""
    heads = [cfg.num_layers] + ([cfg.mini_layers] if cfg.mini_head else [])
    return step_flops(cfg, seq_len, sequences, predicted, cfg.num_layers, heads,
                      set(range(1, cfg.num_layers + 1)), True, True, cfg.activation_checkpointing,
                      fused_attention)


def adapt_step_flops(cfg: ModelConfig, seq_len: int, sequences: float, predicted: float,
                     through: str, fused_attention: bool = True, depth: Optional[int] = None) -> StepFlops:
    """Step 2: only the token embeddings (and their tied projection) train, through the mini or full model.

    "full" runs the primary model with its primary head only; "mini" runs ``MiniModel``, of depth k for
    MiniJoint or ``depth`` (extracted + new layers) for a MiniPost mini-model.
    """
    if through not in ("mini", "full"):
        raise ValueError(f"through must be 'mini' or 'full', not {through!r}")
    if depth is None:
        depth = cfg.mini_layers if through == "mini" else cfg.num_layers
    return step_flops(cfg, seq_len, sequences, predicted, depth, [depth], set(), True, False,
                      cfg.activation_checkpointing, fused_attention)


def minipost_step_flops(cfg: ModelConfig, seq_len: int, sequences: float, predicted: float,
                        frozen_layers: int, new_layers: int, checkpointing: Optional[bool] = None,
                        fused_attention: bool = True) -> StepFlops:
    """MiniPost step 1b: embeddings and bottom ``frozen_layers`` frozen, ``new_layers`` and a new head train.

    The new head's projection stays tied to the frozen token embeddings, so it has no weight gradient.
    """
    depth = frozen_layers + new_layers
    checkpointing = cfg.activation_checkpointing if checkpointing is None else checkpointing
    return step_flops(cfg, seq_len, sequences, predicted, depth, [depth],
                      set(range(frozen_layers + 1, depth + 1)), False, True, checkpointing,
                      fused_attention)


def finetune_step_flops(cfg: ModelConfig, seq_len: int, sequences: float, num_labels: int,
                        fused_attention: bool = True) -> StepFlops:
    """Step 3: sequence classification on the <s> token, body trained, embeddings (all of them) frozen.

    The head is dense h x h -> tanh -> out h x num_labels, as Hugging Face's RobertaClassificationHead.
    """
    body = step_flops(cfg, seq_len, sequences, 0, cfg.num_layers, [], set(range(1, cfg.num_layers + 1)),
                      False, False, cfg.activation_checkpointing, fused_attention)
    h = cfg.hidden_size
    head = 2.0 * sequences * (h * h + h * num_labels)  # one position per sequence
    return body + StepFlops(forward=head, backward_input=head, backward_weight=head)


def parameter_counts(cfg: ModelConfig) -> dict:
    """Parameters by part, as ``mmadapt.model`` builds them (the heads' projection is tied, not counted).

    For memory estimates: ZeRO partitions, and optimizer state exists only for what trains.
    """
    h, f, v = cfg.hidden_size, cfg.intermediate_size, cfg.vocab_size
    layer_norm = 2 * h
    token_embeddings = v * h
    embeddings = token_embeddings + (cfg.max_position_embeddings + cfg.type_vocab_size) * h + layer_norm
    layer = (4 * h * h + 4 * h) + (2 * h * f + f + h) + 2 * layer_norm  # attention, FFN, two LayerNorms
    head = (h * h + h) + layer_norm + v  # dense, LayerNorm, vocabulary bias
    return {"token_embeddings": token_embeddings, "embeddings": embeddings, "layer": layer, "head": head}


def model_parameters(cfg: ModelConfig, depth: Optional[int] = None, heads: Optional[int] = None) -> int:
    """Embeddings + ``depth`` layers (default all) + ``heads`` MLM heads (default: primary + mini head)."""
    parts = parameter_counts(cfg)
    depth = cfg.num_layers if depth is None else depth
    heads = (2 if cfg.mini_head else 1) if heads is None else heads
    return parts["embeddings"] + depth * parts["layer"] + heads * parts["head"]


# ---------------------------------------------------------------- measured counts


def _sdpa_forward_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    b, heads, s_q, d = query_shape
    s_k, d_v = key_shape[-2], value_shape[-1]
    return 2 * b * heads * s_q * s_k * (d + d_v)  # QK^T, then P V


def _sdpa_backward_flops(grad_out_shape, query_shape, key_shape, value_shape, *args, out_shape=None,
                         **kwargs) -> int:
    b, heads, s_q, d = query_shape
    s_k, d_v = key_shape[-2], value_shape[-1]
    # Recomputed QK^T, then dP = dO V^T, dV = P^T dO, dQ = dS K, dK = dS^T Q (torch's flash convention).
    return 2 * b * heads * s_q * s_k * (d + d_v + d_v + d + d)


def register_cpu_attention_flops() -> None:
    """Teach FlopCounterMode the CPU flash-attention kernels (torch 2.13 leaves them uncounted).

    Formulas match what torch registers for ``_scaled_dot_product_flash_attention`` on GPU, so a count
    is the same on either device. Idempotent; a torch that counts them already is left alone.
    """
    import torch
    from torch.utils import flop_counter

    aten = torch.ops.aten
    for name, formula in (("_scaled_dot_product_flash_attention_for_cpu", _sdpa_forward_flops),
                          ("_scaled_dot_product_flash_attention_for_cpu_backward", _sdpa_backward_flops)):
        op = getattr(aten, name, None)
        if op is not None and op not in flop_counter.flop_registry:
            flop_counter.register_flop_formula(op)(formula)


@dataclass
class MeasuredFlops:
    forward: int
    backward: int  # includes activation checkpointing's recompute, which runs inside backward
    by_module: dict  # module path -> forward + backward FLOPs inside it (FlopCounterMode's tracker)

    @property
    def total(self) -> int:
        return self.forward + self.backward


def measure_step_flops(loss_fn: Callable[[], "object"]) -> MeasuredFlops:
    """FLOPs torch actually executes for ``loss_fn()`` and its ``backward()``, forward and backward apart.

    Freeze parameters with ``requires_grad_(False)`` before calling: autograd then skips the weight
    gradients (and the input gradients nobody needs) exactly as a real training step does.
    """
    from torch.utils.flop_counter import FlopCounterMode

    register_cpu_attention_flops()
    # One counter over both passes: its module tracker attributes backward FLOPs to the module whose
    # forward it saw, which is how a test tells a frozen layer's (absent) backward apart.
    with FlopCounterMode(display=False) as counter:
        loss = loss_fn()
        forward = counter.get_total_flops()
        loss.backward()
    total = counter.get_total_flops()
    by_module = {name: sum(ops.values()) for name, ops in counter.get_flop_counts().items()}
    return MeasuredFlops(forward, total - forward, by_module)


def per_token(flops: StepFlops, sequences: float, seq_len: int) -> float:
    """Total FLOPs of a step divided by the tokens it reads (every position, masked or not)."""
    return flops.total / (sequences * seq_len)


def measure_forward_flops(fn: Callable[[], "object"]) -> tuple["object", float]:
    """(fn's result, the FLOPs torch executed for it): an evaluation's cost, counted as it runs."""
    from torch.utils.flop_counter import FlopCounterMode

    register_cpu_attention_flops()
    with FlopCounterMode(display=False) as counter:
        result = fn()
    return result, float(counter.get_total_flops())


def fused_attention_runs(cfg) -> bool:
    """Whether training runs a fused attention kernel (which recomputes its scores in backward, see
    above): torch's CPU kernels take the plain math path when attention dropout is on."""
    from .engine import device

    return cfg.attention_dropout == 0.0 or device().type != "cpu"
