"""Encoder equality with Hugging Face, the masked-only head, the mini-model view."""

import dataclasses

import pytest
import torch
from transformers import AutoModelForMaskedLM, RobertaConfig, RobertaForMaskedLM, XLMRobertaForMaskedLM

from mmadapt.config import ModelConfig, resolve_model
from mmadapt.errors import ConfigError
from mmadapt.hf_io import export_hf, hf_config, load_into, load_pretrained_state_dict, read_pretrained_arch
from mmadapt.hf_io import pretrained_model_config
from mmadapt.model import IGNORE_INDEX, MiniJointForMaskedLM, MiniModel, masked_lm_loss
from mmadapt.tasks import PairClassifier

from conftest import tiny_config


def _batch(cfg, b=3, s=17, pad_last=4, seed=1):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(4, cfg.vocab_size - 1, (b, s), generator=g)
    ids[:, 0] = 0
    ids[-1, -pad_last:] = cfg.pad_token_id  # one padded row exercises the attention mask
    labels = torch.full_like(ids, IGNORE_INDEX)
    pick = torch.rand(b, s, generator=g) < 0.3
    pick &= ids.ne(cfg.pad_token_id)
    labels[pick] = ids[pick]
    return ids, labels


@pytest.mark.parametrize("hf_cls", [XLMRobertaForMaskedLM, RobertaForMaskedLM])
def test_hf_directory_loads_with_identical_logits(tmp_path, cfg, hf_cls):
    hf_cfg = hf_config(cfg)
    if hf_cls is RobertaForMaskedLM:
        hf_cfg = RobertaConfig(**{k: v for k, v in hf_cfg.to_dict().items() if k != "model_type"})
    torch.manual_seed(3)
    hf = hf_cls(hf_cfg).eval()
    with torch.no_grad():  # non-trivial LayerNorms and biases, so a mapping slip cannot hide
        for name, p in hf.named_parameters():
            if "LayerNorm" in name or "layer_norm" in name or name.endswith("bias"):
                p.add_(0.1 * torch.randn_like(p))
    hf.save_pretrained(tmp_path / "hf")

    arch = read_pretrained_arch(str(tmp_path / "hf"))
    ours_cfg = resolve_model(dataclasses.replace(cfg, model=str(tmp_path / "hf"), vocab_size=None,
                                                 hidden_size=None, num_layers=None, num_heads=None,
                                                 intermediate_size=None, max_position_embeddings=None),
                             pretrained=arch["arch"])
    ours = MiniJointForMaskedLM(ours_cfg).eval()
    load_into(ours, load_pretrained_state_dict(str(tmp_path / "hf")))

    ids, _ = _batch(cfg)
    with torch.no_grad():
        expected = hf(input_ids=ids, attention_mask=ids.ne(cfg.pad_token_id).long()).logits
        got = ours.logits(ids)
    keep = ids.ne(cfg.pad_token_id)
    torch.testing.assert_close(got[keep], expected[keep], rtol=1e-5, atol=1e-5)


def test_export_loads_in_transformers_with_identical_logits(tmp_path, cfg):
    model = MiniJointForMaskedLM(cfg).eval()
    export_hf(model.state_dict(), cfg, str(tmp_path / "export"))
    hf = AutoModelForMaskedLM.from_pretrained(tmp_path / "export").eval()
    assert isinstance(hf, XLMRobertaForMaskedLM)
    ids, _ = _batch(cfg)
    with torch.no_grad():
        expected = model.logits(ids)
        got = hf(input_ids=ids, attention_mask=ids.ne(cfg.pad_token_id).long()).logits
    keep = ids.ne(cfg.pad_token_id)
    torch.testing.assert_close(got[keep], expected[keep], rtol=1e-5, atol=1e-5)

    # and back: the mini head travels beside the Hugging Face files
    again = MiniJointForMaskedLM(cfg).eval()
    load_into(again, load_pretrained_state_dict(str(tmp_path / "export")))
    for (name, a), (_, b) in zip(model.state_dict().items(), again.state_dict().items()):
        assert torch.equal(a, b), name
    assert not (tmp_path / "export.tmp").exists()


def test_masked_only_head_equals_full_head_at_masked_positions(cfg):
    model = MiniJointForMaskedLM(cfg).eval()
    ids, labels = _batch(cfg)
    with torch.no_grad():
        hidden, _ = model.encode(ids)
        full_logits = model.lm_head(hidden)
        sel = labels.ne(IGNORE_INDEX)
        expected = torch.nn.functional.cross_entropy(full_logits[sel], labels[sel])
        got = masked_lm_loss(model.lm_head, hidden, labels)
        torch.testing.assert_close(model.lm_head(hidden[sel]), full_logits[sel])
    torch.testing.assert_close(got, expected)


def test_no_masked_token_gives_zero_loss_not_nan(cfg):
    model = MiniJointForMaskedLM(cfg)
    ids, labels = _batch(cfg)
    out = model(ids, torch.full_like(labels, IGNORE_INDEX))
    assert out.loss.item() == 0.0


def test_minijoint_loss_is_primary_plus_weighted_mini(cfg):
    cfg = dataclasses.replace(cfg, mini_loss_weight=0.5)
    model = MiniJointForMaskedLM(cfg).eval()
    ids, labels = _batch(cfg)
    with torch.no_grad():
        out = model(ids, labels)
        _, states = model.encode(ids, output_hidden_states=True)
        mini = masked_lm_loss(model.mini_head, states[cfg.mini_layers], labels)
        primary = masked_lm_loss(model.lm_head, states[-1], labels)
    torch.testing.assert_close(out.mini_loss, mini)
    torch.testing.assert_close(out.mlm_loss, primary)
    torch.testing.assert_close(out.loss, primary + 0.5 * mini)
    assert not torch.allclose(mini, primary)


def test_mini_view_matches_layer_k_and_never_runs_upper_layers(cfg):
    model = MiniJointForMaskedLM(cfg).eval()
    ids, labels = _batch(cfg)
    calls = []
    for i, layer in enumerate(model.layers):
        layer.register_forward_hook(lambda m, a, o, i=i: calls.append(i))
    view = MiniModel.view(model)
    with torch.no_grad():
        _, states = model.encode(ids, output_hidden_states=True)
        calls.clear()
        mini_hidden = view.encode(ids)
        mini_out = view(ids, labels)
    assert set(calls) == set(range(cfg.mini_layers))
    torch.testing.assert_close(mini_hidden, states[cfg.mini_layers], rtol=0, atol=0)
    torch.testing.assert_close(mini_out.loss, model(ids, labels).mini_loss)
    # the view shares storage: it is the same mini-model, not a copy
    assert view.roberta.embeddings.word_embeddings.weight is model.roberta.embeddings.word_embeddings.weight
    n_view = sum(p.numel() for p in view.parameters())
    n_full = sum(p.numel() for p in model.parameters())
    assert n_view < n_full


def test_heads_are_tied_to_input_embeddings(cfg):
    model = MiniJointForMaskedLM(cfg)
    emb = model.roberta.embeddings.word_embeddings.weight
    assert model.lm_head.decoder_weight is emb and model.mini_head.decoder_weight is emb
    assert model.roberta.embeddings.word_embeddings.weight[cfg.pad_token_id].abs().sum() == 0


def test_mini_layers_out_of_range_is_one_clear_error():
    with pytest.raises(ConfigError, match=r"--mini_layers 4 is outside 1\.\.3"):
        tiny_config(mini_layers=4)
    with pytest.raises(ConfigError, match="outside"):
        tiny_config(mini_layers=0)
    assert tiny_config(mini_head=False, mini_layers=None).mini_layers is None


def test_presets_and_default_mini_depth():
    large = resolve_model(ModelConfig(model="xlmr-large"))
    assert (large.num_layers, large.hidden_size, large.vocab_size, large.mini_layers) == (24, 1024, 250002, 4)
    xxl = resolve_model(ModelConfig(model="xlmr-xxl", mini_layers=6))
    assert (xxl.num_layers, xxl.hidden_size, xxl.mini_layers) == (48, 4096, 6)
    with pytest.raises(ConfigError, match="--tokenizer has 100 tokens"):
        resolve_model(ModelConfig(model="xlmr-base"), tokenizer_vocab=100)
    assert resolve_model(ModelConfig(model="small"), tokenizer_vocab=100).vocab_size == 100


def test_sinusoidal_position_init_gives_relative_offsets_and_a_zero_pad_row(cfg):
    torch.manual_seed(0)
    plain = MiniJointForMaskedLM(cfg).roberta.embeddings.position_embeddings.weight
    model = MiniJointForMaskedLM(dataclasses.replace(cfg, sinusoidal_positions=0.1))
    table = model.roberta.embeddings.position_embeddings.weight.detach()
    assert torch.all(table[cfg.pad_token_id] == 0)
    rows = table[cfg.pad_token_id + 1:]
    assert rows.abs().max() <= 0.1 + 1e-6 and not torch.allclose(rows, plain[cfg.pad_token_id + 1:])
    # sin/cos pairs: every row has the same norm, and the dot product of two rows depends on their
    # offset only, which is what lets attention find neighbours from the first step
    assert torch.allclose(rows.norm(dim=1), rows[0].norm().expand(len(rows)), rtol=1e-4)
    assert torch.allclose(rows[3] @ rows[5], rows[10] @ rows[12], atol=1e-5)
    assert model.roberta.embeddings.position_embeddings.weight.requires_grad  # trained as ever: only its start differs


def test_later_stages_train_with_the_checkpoints_dropout(tmp_path, cfg):
    """A model pretrained without dropout is fine-tuned and adapted without it unless told otherwise."""
    for dropout in (0.0, 0.1):
        with_dropout = dataclasses.replace(cfg, hidden_dropout=dropout, attention_dropout=dropout)
        export_hf(MiniJointForMaskedLM(with_dropout).state_dict(), with_dropout, str(tmp_path / str(dropout)))
        loaded = pretrained_model_config(str(tmp_path / str(dropout)))
        assert loaded.hidden_dropout == loaded.attention_dropout == dropout
        assert loaded.initializer_range == cfg.initializer_range


def test_mean_pooling_ignores_padding(cfg):
    torch.manual_seed(0)
    classifier = PairClassifier(dataclasses.replace(cfg, hidden_dropout=0.0, attention_dropout=0.0), 3,
                                pooling="mean").eval()
    ids = torch.randint(4, cfg.vocab_size - 1, (1, 9))
    ids[0, 0] = 0
    padded = torch.cat([ids, torch.full((1, 5), cfg.pad_token_id)], dim=1)
    assert torch.allclose(classifier.logits(ids), classifier.logits(padded), atol=1e-5)
    cls = PairClassifier(dataclasses.replace(cfg, hidden_dropout=0.0, attention_dropout=0.0), 3).eval()
    cls.load_state_dict(classifier.state_dict())  # the same weights: only the pooling differs
    assert not torch.allclose(cls.logits(ids), classifier.logits(ids))


def test_no_module_below_the_stages_imports_a_stage():
    """Formats live in mmadapt/artifacts.py; only the orchestrators (demo, pipeline, orchestrate, cli, launch) and the
    launchers sit above the stages."""
    import ast
    import pathlib

    import mmadapt

    root = pathlib.Path(mmadapt.__file__).parent
    above = {"demo.py", "pipeline.py", "cli.py", "launch.py", "orchestrate.py"}
    for path in root.glob("*.py"):
        if path.name in above:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                module = ("." * node.level) + (node.module or "")
                assert "stages" not in module and "launchers" not in module, f"{path.name} imports {module}"
