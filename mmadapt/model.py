"""XLM-R/RoBERTa encoder with a primary MLM head and an optional MiniJoint head after layer k.

Parameter names mirror Hugging Face's ``XLMRobertaForMaskedLM`` (``roberta.embeddings...``,
``roberta.encoder.layer.N...``, ``lm_head...``), so import and export are a state-dict copy; the mini
head lives under ``mini_head.`` and is saved beside the Hugging Face files.

Each module initialises its own weights inside its ``__init__`` (via ``reset_parameters``): under
``deepspeed.zero.Init`` a module is partitioned as soon as its ``__init__`` returns, so a parent that
touched its children's weights afterwards would see empty shards (the transformers ``_init_weights``
trap in ../shared/PLATFORM.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from .config import ModelConfig
from .tied import TiedGradient, lookup, projection

IGNORE_INDEX = -100


class Linear(nn.Linear):
    """nn.Linear initialised N(0, std) with zero bias, as RoBERTa is."""

    def __init__(self, in_features: int, out_features: int, std: float, bias: bool = True):
        self.std = std
        super().__init__(in_features, out_features, bias=bias)

    def reset_parameters(self) -> None:
        nn.init.normal_(self.weight, std=self.std)
        if self.bias is not None:
            nn.init.zeros_(self.bias)


class Embedding(nn.Embedding):
    """nn.Embedding initialised N(0, std), padding row zero."""

    def __init__(self, num: int, dim: int, std: float, padding_idx: Optional[int] = None):
        self.std = std
        super().__init__(num, dim, padding_idx=padding_idx)

    def reset_parameters(self) -> None:
        nn.init.normal_(self.weight, std=self.std)
        self._fill_padding_idx_with_zero()


class SinusoidalInitEmbedding(Embedding):
    """A position table initialised as sinusoids of one amplitude (Vaswani et al.) instead of N(0, std).

    Still an ordinary trained table (the architecture and checkpoints stay XLM-R's); only the start
    differs. From N(0, 0.02) rows a small post-LN encoder spends most of a short run at the unigram
    plateau before its attention finds word order; sinusoid rows give it relative offsets from step 0.
    """

    def __init__(self, num: int, dim: int, amplitude: float, padding_idx: Optional[int] = None):
        self.amplitude = amplitude
        super().__init__(num, dim, amplitude, padding_idx=padding_idx)

    def reset_parameters(self) -> None:
        num, dim = self.weight.shape
        position = torch.arange(num, dtype=torch.float32)[:, None]
        angle = position / 10000 ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim)
        with torch.no_grad():
            self.weight[:, 0::2] = self.amplitude * angle.sin()
            self.weight[:, 1::2] = self.amplitude * angle.cos()[:, :dim // 2]
        self._fill_padding_idx_with_zero()


class TokenEmbedding(Embedding):
    """The token matrix, tied to the MLM heads' projections: one gradient buffer for all its uses
    (mmadapt/tied.py), so a 250k-row matrix's dense gradient is held once, not twice."""

    def __init__(self, num: int, dim: int, std: float, padding_idx: Optional[int] = None):
        super().__init__(num, dim, std, padding_idx)
        self.tied = TiedGradient()

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return lookup(input_ids, self.weight, self.padding_idx, self.tied)


def fresh_embedding_rows(cfg: ModelConfig, seed: int) -> torch.Tensor:
    """A new token-embedding matrix as ``Embedding`` initialises one (N(0, std), padding row zero), drawn
    from ``seed`` alone so that every rank draws the same (active forgetting, step 2's start)."""
    g = torch.Generator().manual_seed(seed)
    rows = torch.randn(cfg.vocab_size, cfg.hidden_size, generator=g) * cfg.initializer_range
    rows[cfg.pad_token_id] = 0.0
    return rows


def position_ids_from_input_ids(input_ids: torch.Tensor, pad_token_id: int) -> torch.Tensor:
    # RoBERTa numbers real tokens from pad_token_id + 1 and gives padding the pad position.
    mask = input_ids.ne(pad_token_id).int()
    return (torch.cumsum(mask, dim=1) * mask).long() + pad_token_id


class Embeddings(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        std = cfg.initializer_range
        self.pad_token_id = cfg.pad_token_id
        self.word_embeddings = TokenEmbedding(cfg.vocab_size, cfg.hidden_size, std, cfg.pad_token_id)
        if cfg.sinusoidal_positions:
            self.position_embeddings = SinusoidalInitEmbedding(cfg.max_position_embeddings, cfg.hidden_size,
                                                               cfg.sinusoidal_positions, cfg.pad_token_id)
        else:
            self.position_embeddings = Embedding(cfg.max_position_embeddings, cfg.hidden_size, std,
                                                 cfg.pad_token_id)
        self.token_type_embeddings = Embedding(cfg.type_vocab_size, cfg.hidden_size, std)
        self.LayerNorm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.dropout = nn.Dropout(cfg.hidden_dropout)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        positions = position_ids_from_input_ids(input_ids, self.pad_token_id)
        x = self.word_embeddings(input_ids) + self.position_embeddings(positions)
        # XLM-R has one token type; adding its row keeps the arithmetic identical to Hugging Face's. Looked
        # up through the module, not read as .weight[0]: ZeRO-3 gathers a module's weight for its own call,
        # and a bare read outside an engine's forward (evaluation) would see an empty partition.
        x = x + self.token_type_embeddings(input_ids.new_zeros(1, 1))
        return self.dropout(self.LayerNorm(x))


class SelfAttention(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        h, std = cfg.hidden_size, cfg.initializer_range
        self.num_heads = cfg.num_heads
        self.dropout_p = cfg.attention_dropout
        self.query = Linear(h, h, std)
        self.key = Linear(h, h, std)
        self.value = Linear(h, h, std)

    def forward(self, x: torch.Tensor, attn_mask: Optional[torch.Tensor]) -> torch.Tensor:
        b, s, h = x.shape
        split = lambda t: t.view(b, s, self.num_heads, h // self.num_heads).transpose(1, 2)  # noqa: E731
        ctx = F.scaled_dot_product_attention(
            split(self.query(x)), split(self.key(x)), split(self.value(x)), attn_mask=attn_mask,
            dropout_p=self.dropout_p if self.training else 0.0)
        return ctx.transpose(1, 2).reshape(b, s, h)


class DenseResidualNorm(nn.Module):
    """dense -> dropout -> + residual -> LayerNorm (RoBERTa's post-LN sublayer output)."""

    def __init__(self, in_features: int, cfg: ModelConfig):
        super().__init__()
        self.dense = Linear(in_features, cfg.hidden_size, cfg.initializer_range)
        self.LayerNorm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.dropout = nn.Dropout(cfg.hidden_dropout)

    def forward(self, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dropout(self.dense(x)) + residual)


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        setattr(self, "self", SelfAttention(cfg))  # Hugging Face's name: attention.self.query
        self.output = DenseResidualNorm(cfg.hidden_size, cfg)

    def forward(self, x, attn_mask):
        return self.output(getattr(self, "self")(x, attn_mask), x)


class Intermediate(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.dense = Linear(cfg.hidden_size, cfg.intermediate_size, cfg.initializer_range)

    def forward(self, x):
        return F.gelu(self.dense(x))


class EncoderLayer(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.attention = Attention(cfg)
        self.intermediate = Intermediate(cfg)
        self.output = DenseResidualNorm(cfg.intermediate_size, cfg)

    def forward(self, x: torch.Tensor, attn_mask: Optional[torch.Tensor]) -> torch.Tensor:
        a = self.attention(x, attn_mask)
        return self.output(self.intermediate(a), a)


def run_layers(layers, x: torch.Tensor, attn_mask: Optional[torch.Tensor], checkpointing: bool,
               collect: Optional[list] = None) -> torch.Tensor:
    """Run ``layers`` in turn, each recomputed in backward when ``checkpointing`` (non-reentrant, only
    while gradients are on); ``collect`` gets every layer's output. The one place a layer runs."""
    for layer in layers:
        if checkpointing and torch.is_grad_enabled():
            x = checkpoint(layer, x, attn_mask, use_reentrant=False)
        else:
            x = layer(x, attn_mask)
        if collect is not None:
            collect.append(x)
    return x


class LayerStack(nn.Module):
    def __init__(self, layers: list):
        super().__init__()
        self.layer = nn.ModuleList(layers)


class Encoder(nn.Module):
    """Embeddings + transformer layers: Hugging Face's ``roberta`` submodule.

    With ``shared`` it reuses that encoder's embeddings and bottom ``num_layers`` layers (no copy).
    """

    def __init__(self, cfg: ModelConfig, num_layers: Optional[int] = None,
                 shared: Optional["Encoder"] = None):
        super().__init__()
        n = cfg.num_layers if num_layers is None else num_layers
        if shared is None:
            self.embeddings = Embeddings(cfg)
            self.encoder = LayerStack([EncoderLayer(cfg) for _ in range(n)])
        else:
            self.embeddings = shared.embeddings
            self.encoder = LayerStack(list(shared.encoder.layer[:n]))

    def forward(self, input_ids: torch.Tensor, checkpointing: bool = False) -> torch.Tensor:
        attn_mask = padding_mask(input_ids, self.embeddings.pad_token_id)
        return run_layers(self.encoder.layer, self.embeddings(input_ids), attn_mask, checkpointing and self.training)


class MLMHead(nn.Module):
    """dense -> gelu -> LayerNorm -> tied vocabulary projection + bias.

    The projection weight is the input embedding matrix, registered here too so that ZeRO-3 gathers
    it for this module's forward.
    """

    def __init__(self, cfg: ModelConfig, word_embeddings: "TokenEmbedding"):
        super().__init__()
        self.dense = Linear(cfg.hidden_size, cfg.hidden_size, cfg.initializer_range)
        self.layer_norm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.bias = nn.Parameter(torch.zeros(cfg.vocab_size))
        self.decoder_weight = word_embeddings.weight
        self.tied = word_embeddings.tied  # a plain object, not a module: shared with the lookup

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        x = self.layer_norm(F.gelu(self.dense(features)))
        return projection(x, self.decoder_weight, self.bias, self.tied)


def masked_lm_loss(head: MLMHead, hidden: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over masked positions, projecting only those positions to the vocabulary.

    Gathering first is what makes a shallow model cheap: with a 250k vocabulary the projection is
    most of the head's cost, and 85% of positions have no label.
    """
    selected = labels.ne(IGNORE_INDEX)
    logits = head(hidden[selected])
    # Sum / max(n, 1): a micro-batch with no masked token contributes zero, not NaN.
    total = F.cross_entropy(logits.float(), labels[selected], reduction="sum")
    return total / selected.sum().clamp(min=1)


def masked_mean(hidden: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """[b, t, h] states averaged over the positions ``keep`` ([b, t]) marks: mmadapt's one mean pooling
    (task heads, retrieval, layer similarity). The exported modeling_mmadapt_pooling.py repeats it, since
    it must load without mmadapt installed."""
    keep = keep.unsqueeze(-1).to(hidden.dtype)
    return (hidden * keep).sum(1) / keep.sum(1)


def padding_mask(input_ids: torch.Tensor, pad_token_id: int) -> Optional[torch.Tensor]:
    """Boolean attention mask [b, 1, 1, s] (True = attend), or None when nothing is padded."""
    keep = input_ids.ne(pad_token_id)
    if bool(keep.all()):
        return None
    return keep[:, None, None, :]


@dataclass
class MLMOutput:
    """A masked-LM step: ``loss`` is what trains (primary + weighted mini), ``mlm_loss`` the primary's."""
    loss: torch.Tensor
    mlm_loss: torch.Tensor
    mini_loss: Optional[torch.Tensor] = None


@dataclass
class TaskOutput:
    """A task step (classification or span extraction): its loss, which is also what is reported."""
    loss: torch.Tensor

    @property
    def mlm_loss(self) -> torch.Tensor:  # the Trainer reports `mlm_loss`: for a task, its loss
        return self.loss

    mini_loss = None


class MiniJointForMaskedLM(nn.Module):
    """The primary model; with ``cfg.mini_head`` it also carries the MiniJoint head after layer k."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.config = cfg
        self.roberta = Encoder(cfg)
        self.lm_head = MLMHead(cfg, self.roberta.embeddings.word_embeddings)
        self.mini_head = MLMHead(cfg, self.roberta.embeddings.word_embeddings) if cfg.mini_head else None

    @property
    def layers(self) -> nn.ModuleList:
        return self.roberta.encoder.layer

    def run_layers(self, x, attn_mask, layers, collect: Optional[list] = None):
        return run_layers(layers, x, attn_mask, self.config.activation_checkpointing and self.training, collect)

    def encode(self, input_ids: torch.Tensor, output_hidden_states: bool = False):
        """Hidden states after the last layer (and, optionally, after the embeddings and each layer)."""
        attn_mask = padding_mask(input_ids, self.config.pad_token_id)
        x = self.roberta.embeddings(input_ids)
        collect = [x] if output_hidden_states else None
        return self.run_layers(x, attn_mask, self.layers, collect), collect

    def forward(self, input_ids: torch.Tensor, labels: torch.Tensor) -> MLMOutput:
        attn_mask = padding_mask(input_ids, self.config.pad_token_id)
        x = self.roberta.embeddings(input_ids)
        k = self.config.mini_layers if self.mini_head is not None else 0
        mini_loss = None
        if k:
            x = self.run_layers(x, attn_mask, self.layers[:k])
            mini_loss = masked_lm_loss(self.mini_head, x, labels)
        x = self.run_layers(x, attn_mask, self.layers[k:])
        mlm_loss = masked_lm_loss(self.lm_head, x, labels)
        loss = mlm_loss if mini_loss is None else mlm_loss + self.config.mini_loss_weight * mini_loss
        return MLMOutput(loss=loss, mlm_loss=mlm_loss, mini_loss=mini_loss)

    def logits(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Vocabulary logits at every position (for export checks and evaluation, not training)."""
        hidden, _ = self.encode(input_ids)
        return self.lm_head(hidden)


class MiniModel(nn.Module):
    """Embeddings + ``depth`` layers + one MLM head: what step 2 trains through.

    The MiniJoint mini-model is ``depth = mini_layers`` with the mini head; a MiniPost mini-model is
    the frozen bottom layers plus its new ones; step 2's standard path builds ``depth = L`` standalone
    and loads the primary head into ``head``. ``MiniModel.view(primary)`` shares the primary model's
    embeddings, layers 1..k and mini head (no copy), so running it never touches layers k+1..L; built
    standalone, a DeepSpeed engine over it holds only its own parameters.
    """

    def __init__(self, cfg: ModelConfig, depth: Optional[int] = None,
                 shared: Optional[MiniJointForMaskedLM] = None, frozen_bottom: int = 0):
        super().__init__()
        self.config = cfg
        self.depth = cfg.mini_layers if depth is None else depth
        # MiniPost step 1b: the extracted bottom runs without autograd, so no backward goes below the
        # first trainable layer. (Step 2 needs gradients through every layer: there it is 0.)
        self.frozen_bottom = frozen_bottom
        self.roberta = Encoder(cfg, self.depth, shared=shared.roberta if shared else None)
        self.head = (shared.mini_head if shared is not None
                     else MLMHead(cfg, self.roberta.embeddings.word_embeddings))

    @classmethod
    def view(cls, primary: MiniJointForMaskedLM) -> "MiniModel":
        if primary.mini_head is None:
            raise ValueError("this model has no mini head (trained with --no_mini_head)")
        return cls(primary.config, shared=primary)

    def encode(self, input_ids: torch.Tensor) -> torch.Tensor:
        attn_mask = padding_mask(input_ids, self.config.pad_token_id)
        layers = self.roberta.encoder.layer
        with torch.set_grad_enabled(torch.is_grad_enabled() and self.frozen_bottom == 0):
            x = run_layers(layers[:self.frozen_bottom], self.roberta.embeddings(input_ids), attn_mask, False)
        return run_layers(layers[self.frozen_bottom:], x, attn_mask,
                          self.config.activation_checkpointing and self.training)

    def forward(self, input_ids: torch.Tensor, labels: torch.Tensor) -> MLMOutput:
        loss = masked_lm_loss(self.head, self.encode(input_ids), labels)
        return MLMOutput(loss=loss, mlm_loss=loss)


def count_parameters(module: nn.Module) -> int:
    """Distinct parameters (tied weights once), using ZeRO-3's full size when partitioned."""
    seen, total = set(), 0
    for p in module.parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        total += getattr(p, "ds_numel", p.numel())
    return total
