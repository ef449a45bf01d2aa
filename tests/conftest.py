import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

from mmadapt.config import ModelConfig, resolve_model  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tiny_config(**over) -> ModelConfig:
    base = dict(model="tiny", vocab_size=97, hidden_size=32, num_layers=4, num_heads=4,
                intermediate_size=64, max_position_embeddings=40, mini_layers=2,
                hidden_dropout=0.0, attention_dropout=0.0)
    base.update(over)
    return resolve_model(ModelConfig(**base))


@pytest.fixture
def cfg():
    torch.manual_seed(0)
    return tiny_config()


@pytest.fixture(scope="session")
def text_and_tokenizer(tmp_path_factory):
    """A small generated corpus and a tokenizer trained on it (no hub, no shared data)."""
    from mmadapt.textgen import write_corpus
    from mmadapt.tokenizer import train_tokenizer

    root = tmp_path_factory.mktemp("corpus")
    text = root / "text.txt"
    write_corpus(str(text), 3000, seed=0)
    tok = train_tokenizer([str(text)], 120, str(root / "tok"))
    return str(text), str(root / "tok"), tok
