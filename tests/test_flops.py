"""The analytic FLOPs of mmadapt.flops against FlopCounterMode on real CPU training steps.

Every stage and path runs one real forward + backward with the right parameters frozen
(requires_grad=False), so autograd skips exactly the gradients a training step skips; the analytic
count, fed the batch's real number of masked positions, must agree within 2% in forward, backward and
total. Differences between paths (what freezing saves, what the mini head adds, what checkpointing
recomputes) are checked the same way, on the measured counts.
"""

import dataclasses

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mmadapt import flops
from mmadapt.model import IGNORE_INDEX, MiniJointForMaskedLM, MiniModel, count_parameters, masked_lm_loss

from conftest import tiny_config

SEQ, BATCH, NUM_LABELS = 64, 2, 3
TOLERANCE = 0.02


def flops_config(**over):
    # Every term above the 2% tolerance: the vocabulary projection of the 23 masked tokens is 10-20% of
    # a step, attention 14% of a layer's forward (the fused kernel's recomputed scores ~3% of backward).
    base = dict(vocab_size=4000, hidden_size=64, num_layers=6, num_heads=4, intermediate_size=256,
                mini_layers=2, max_position_embeddings=SEQ + 2)
    return tiny_config(**{**base, **over})


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    # These matmuls are tiny: a second OpenMP thread only adds spin-waits, which on a busy machine
    # made each step 20x slower.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def batch():
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(3, flops_config().vocab_size, (BATCH, SEQ), generator=g)  # no pad, <s>, </s>
    labels = torch.full_like(ids, IGNORE_INDEX)
    chosen = torch.rand(BATCH, SEQ, generator=g) < 0.15
    labels[chosen] = ids[chosen]
    return ids, labels, int(chosen.sum())


def assert_close(measured: float, analytic: float, what: str) -> None:
    assert analytic > 0, what
    assert abs(measured - analytic) <= TOLERANCE * analytic, \
        f"{what}: measured {measured:.4g}, analytic {analytic:.4g} ({measured / analytic - 1:+.2%})"


def assert_agrees(measured: flops.MeasuredFlops, analytic: flops.StepFlops, what: str) -> None:
    assert_close(measured.forward, analytic.forward, f"{what} forward")
    # Checkpointing's recompute runs inside backward, so the measured backward includes it.
    assert_close(measured.backward, analytic.backward + analytic.recompute, f"{what} backward")
    assert_close(measured.total, analytic.total, f"{what} total")


# ---------------------------------------------------------------- the models of each stage


def primary(cfg):
    torch.manual_seed(0)
    return MiniJointForMaskedLM(cfg).train()


def train_only_token_embeddings(model: nn.Module) -> None:
    """Step 2: the token embeddings (and so the tied decoder_weight) train, nothing else."""
    for p in model.parameters():
        p.requires_grad_(False)
    model.roberta.embeddings.word_embeddings.weight.requires_grad_(True)


def step2_full_loss(model: MiniJointForMaskedLM, ids, labels):
    # The standard path reads only the primary head: forward() would add the mini loss too.
    return masked_lm_loss(model.lm_head, model.encode(ids)[0], labels)


# ---------------------------------------------------------------- each stage, each path


def measure_pretrain(cfg, batch):
    ids, labels, _ = batch
    model = primary(cfg)
    return flops.measure_step_flops(lambda: model(ids, labels).loss)


def measure_step2(cfg, batch, through):
    ids, labels, _ = batch
    model = primary(cfg)
    train_only_token_embeddings(model)
    if through == "mini":
        mini = MiniModel.view(model).train()
        return flops.measure_step_flops(lambda: mini(ids, labels).loss)
    return flops.measure_step_flops(lambda: step2_full_loss(model, ids, labels))


def freeze_as(stage, model) -> None:
    """The stage's own freeze rule (what the runner applies before deepspeed.initialize)."""
    for name, p in model.named_parameters():
        p.requires_grad = stage.trainable(name)


def measure_minipost(cfg, batch, frozen, new):
    """The model launchers/minipost.py trains: MiniModel(frozen_bottom=), frozen by MiniPost's rule."""
    from mmadapt.packs import shared_bottom_names
    from mmadapt.stages.minipost import MiniPost

    ids, labels, _ = batch
    model = MiniModel(dataclasses.replace(cfg, mini_head=False, mini_layers=None), depth=frozen + new,
                      frozen_bottom=frozen).train()
    stage = MiniPost.__new__(MiniPost)
    stage.shared_names = shared_bottom_names(dict(model.named_parameters()), frozen)
    freeze_as(stage, model)
    return flops.measure_step_flops(lambda: model(ids, labels).loss), model


@pytest.mark.parametrize("checkpointing", [False, True], ids=["plain", "checkpointing"])
@pytest.mark.parametrize("mini_head", [True, False], ids=["minijoint", "mlm"])
def test_pretraining_matches(batch, mini_head, checkpointing):
    cfg = flops_config(mini_head=mini_head, mini_layers=2 if mini_head else None,
                       activation_checkpointing=checkpointing)
    analytic = flops.pretrain_step_flops(cfg, SEQ, BATCH, batch[2])
    assert_agrees(measure_pretrain(cfg, batch), analytic, f"pretrain mini_head={mini_head}")


@pytest.mark.parametrize("checkpointing", [False, True], ids=["plain", "checkpointing"])
@pytest.mark.parametrize("through", ["mini", "full"])
def test_step2_matches(batch, through, checkpointing):
    cfg = flops_config(activation_checkpointing=checkpointing)
    analytic = flops.adapt_step_flops(cfg, SEQ, BATCH, batch[2], through)
    assert analytic.backward_weight == 2.0 * batch[2] * cfg.hidden_size * cfg.vocab_size  # tied projection
    assert_agrees(measure_step2(cfg, batch, through), analytic, f"step 2 through {through}")


@pytest.mark.parametrize("checkpointing", [False, True], ids=["plain", "checkpointing"])
@pytest.mark.parametrize("frozen,new", [(2, 2), (4, 1)])
def test_minipost_matches(batch, frozen, new, checkpointing):
    cfg = flops_config(activation_checkpointing=checkpointing)
    measured, _ = measure_minipost(cfg, batch, frozen, new)
    analytic = flops.minipost_step_flops(cfg, SEQ, BATCH, batch[2], frozen, new)
    assert_agrees(measured, analytic, f"minipost {frozen}+{new}")


def test_finetune_matches(batch):
    cfg = flops_config(num_layers=2, mini_layers=1)  # shallow, so layer 1's skipped Q, K, V input grads show
    ids = batch[0]
    targets = torch.arange(BATCH) % NUM_LABELS
    torch.manual_seed(0)
    # the model launchers/finetune.py trains, frozen by its rule (the embeddings)
    from mmadapt.stages.finetune import Finetune
    from mmadapt.tasks import build_task_model, task_spec

    model = build_task_model(task_spec("xnli"), dataclasses.replace(cfg, mini_head=False, mini_layers=None), "cls")
    freeze_as(Finetune.__new__(Finetune), model.train())
    measured = flops.measure_step_flops(lambda: model(ids, targets).loss)
    assert_agrees(measured, flops.finetune_step_flops(cfg, SEQ, BATCH, NUM_LABELS), "finetune")


def test_unfused_attention_matches_with_attention_dropout(batch):
    # Attention dropout sends CPU SDPA down the math path, which keeps the scores instead of
    # recomputing them: its backward is 2x the attention forward, not 2.5x.
    cfg = flops_config(attention_dropout=0.1)
    measured = measure_pretrain(cfg, batch)
    assert_agrees(measured, flops.pretrain_step_flops(cfg, SEQ, BATCH, batch[2], fused_attention=False),
                  "pretrain, math attention")
    fused = measure_pretrain(flops_config(), batch)
    analytic_gap = (flops.pretrain_step_flops(cfg, SEQ, BATCH, batch[2]).total
                    - flops.pretrain_step_flops(cfg, SEQ, BATCH, batch[2], fused_attention=False).total)
    assert_close(fused.total - measured.total, analytic_gap, "fused attention's recomputed scores")


# ---------------------------------------------------------------- what freezing and heads change


def test_freezing_saves_what_the_formula_says(batch):
    cfg = flops_config(mini_head=False, mini_layers=None)
    pretrain, full = measure_pretrain(cfg, batch), measure_step2(flops_config(), batch, "full")
    predicted = batch[2]
    saved = (flops.pretrain_step_flops(cfg, SEQ, BATCH, predicted).total
             - flops.adapt_step_flops(flops_config(), SEQ, BATCH, predicted, "full").total)
    # The weight gradients of every layer and of the head's dense layer: about a quarter of the step.
    assert saved > 0.2 * pretrain.total
    assert_close(pretrain.total - full.total, saved, "pretrain - step 2 full")


def test_mini_head_overhead_and_step2_ratio(batch):
    predicted = batch[2]
    minijoint = measure_pretrain(flops_config(), batch)
    mlm_cfg = flops_config(mini_head=False, mini_layers=None)
    mlm = measure_pretrain(mlm_cfg, batch)
    overhead = (flops.pretrain_step_flops(flops_config(), SEQ, BATCH, predicted).total
                - flops.pretrain_step_flops(mlm_cfg, SEQ, BATCH, predicted).total)
    assert_close(minijoint.total - mlm.total, overhead, "mini head overhead")

    full, mini = measure_step2(flops_config(), batch, "full"), measure_step2(flops_config(), batch, "mini")
    ratio = (flops.adapt_step_flops(flops_config(), SEQ, BATCH, predicted, "full").total
             / flops.adapt_step_flops(flops_config(), SEQ, BATCH, predicted, "mini").total)
    assert ratio > 2.0
    assert_close(full.total / mini.total, ratio, "step 2 full/mini ratio")


def test_checkpointing_recompute_is_counted_apart(batch):
    for through in ("full", "mini"):
        plain = measure_step2(flops_config(), batch, through)
        ckpt_cfg = flops_config(activation_checkpointing=True)
        ckpt = measure_step2(ckpt_cfg, batch, through)
        analytic = flops.adapt_step_flops(ckpt_cfg, SEQ, BATCH, batch[2], through)
        assert plain.forward == ckpt.forward
        depth = ckpt_cfg.num_layers if through == "full" else ckpt_cfg.mini_layers
        one_layer = sum(flops.layer_forward(ckpt_cfg, SEQ, SEQ * BATCH))
        assert analytic.recompute == pytest.approx(depth * one_layer)
        assert_close(ckpt.backward - plain.backward, analytic.recompute, f"recompute through {through}")


def test_layers_below_the_first_trainable_one_have_no_backward(batch):
    cfg = flops_config()
    shallow, _ = measure_minipost(cfg, batch, frozen=1, new=1)
    deep, model = measure_minipost(cfg, batch, frozen=4, new=1)
    one_layer = sum(flops.layer_forward(cfg, SEQ, SEQ * BATCH))
    # Three more frozen layers below cost no backward, only their forward.
    assert deep.backward == shallow.backward
    assert_close(deep.forward - shallow.forward, 3 * one_layer, "three frozen layers' forward")
    # And the frozen bottom layer's own count is its forward alone.
    name = type(model).__name__ + ".roberta.encoder.layer.0"
    assert deep.by_module[name] == pytest.approx(one_layer)
    # The lowest trainable layer skips only its Q, K, V input gradients.
    new_layer = deep.by_module[type(model).__name__ + ".roberta.encoder.layer.4"]
    linear, attention = flops.layer_forward(cfg, SEQ, SEQ * BATCH)
    expected = 3 * linear + 3.5 * attention - flops.qkv_input_grad(cfg, SEQ * BATCH)
    assert_close(new_layer, expected, "lowest trainable layer")


def test_cpu_flash_attention_is_counted():
    b, heads, s, d = 2, 4, 16, 8
    q, k, v = (torch.randn(b, heads, s, d, requires_grad=True) for _ in range(3))
    measured = flops.measure_step_flops(lambda: F.scaled_dot_product_attention(q, k, v).sum())
    assert measured.forward == 2 * 2 * b * heads * s * s * d
    assert measured.backward == 2.5 * measured.forward


def test_parameter_counts_match_the_built_models():
    cfg = flops_config()
    assert flops.model_parameters(cfg) == count_parameters(primary(cfg))
    assert flops.model_parameters(cfg, cfg.mini_layers, heads=1) == count_parameters(MiniModel(cfg))
    plain = flops_config(mini_head=False, mini_layers=None)
    assert flops.model_parameters(plain) == count_parameters(primary(plain))
