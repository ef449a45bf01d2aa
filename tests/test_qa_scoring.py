"""MLQA scoring on hand-made predictions: SQuAD F1 on known strings, the span mask's device, and exact match
and F1 as fractions (0..1, as accuracy is), which ZeroShot and --select_by read beside accuracy."""

import pytest
import torch

from mmadapt.tasks import encode_qa, score, span_mask, squad_f1, task_spec
from mmadapt.tokenizer import train_tokenizer


def test_squad_f1_on_known_strings():
    """Normalisation lowercases, drops punctuation and the articles a/an/the, then F1 counts shared tokens:
    - "the cat sat" vs "cat sat on": ["cat", "sat"] vs ["cat", "sat", "on"], 2 shared; precision 2/2, recall 2/3,
      F1 = 2 * 1 * (2/3) / (1 + 2/3) = (4/3) / (5/3) = 4/5.
    - "The Cat!" vs "a cat": ["cat"] vs ["cat"]: 1.
    - "dog" vs "cat": nothing shared: 0.
    - "the" vs "a": both empty after normalisation: equal, 1."""
    assert squad_f1("the cat sat", "cat sat on") == pytest.approx(4 / 5)
    assert squad_f1("The Cat!", "a cat") == 1.0
    assert squad_f1("dog", "cat") == 0.0
    assert squad_f1("the", "a") == 1.0


def test_span_mask_is_built_on_the_given_device():
    """allowed[s, e] for s <= e < s + max_tokens; built where the scores are (meta stands in for an accelerator)."""
    assert span_mask(6, torch.device("meta")).device.type == "meta"
    assert span_mask(4, "cpu", max_tokens=2).int().tolist() == [[1, 1, 0, 0], [0, 1, 1, 0], [0, 0, 1, 1],
                                                                [0, 0, 0, 1]]


class SpanPicker(torch.nn.Module):
    """A QA model that predicts given token spans: start and end logits peak at them."""

    def __init__(self, spans: list, length: int):
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(()))  # score() asks a parameter for the device
        self.register_buffer("logits_out", torch.zeros(len(spans), length, 2))
        for row, (start, end) in enumerate(spans):
            self.logits_out[row, start, 0] = self.logits_out[row, end, 1] = 10.0

    def logits(self, input_ids):
        return self.logits_out[:len(input_ids)]


@pytest.fixture
def hand_made(tmp_path):
    """Three questions, the model's answers chosen by hand:
    - gold "the cat", predicted "cat sees": ["cat", "sees"] vs ["cat"]: P 1/2, R 1, F1 = 2 * (1/2) / (3/2) = 2/3,
      exact match 0;
    - gold "the dog", predicted "the dog": F1 1, exact match 1;
    - gold "the bird", predicted "fish": F1 0, exact match 0.
    Mean F1 = (2/3 + 1 + 0) / 3 = 5/9; exact match = 1/3. Returns (tokenizer, examples, the picking model)."""
    context = "the cat sees the dog . the bird likes the fish ."
    (tmp_path / "text.txt").write_text(context + "\n")
    tok = train_tokenizer([str(tmp_path / "text.txt")], 40, str(tmp_path / "tok"), whole_words=True)
    examples = [{"id": str(i), "context": context, "question": q, "answers": [a], "starts": [context.index(a)]}
                for i, (q, a) in enumerate([("who sees ?", "the cat"), ("who is seen ?", "the dog"),
                                            ("who likes ?", "the bird")])]
    ids, _, offsets, ctx, _ = encode_qa(examples, tok, 32, train=False)
    spans = []
    for row, text in enumerate(["cat sees", "the dog", "fish"]):
        first = context.index(text)
        inside = [t for t, ((o, c), in_ctx) in enumerate(zip(offsets[row], ctx[row].tolist()))
                  if in_ctx and first <= o and c <= first + len(text) and c > o]
        spans.append((inside[0], inside[-1]))
    return tok, examples, SpanPicker(spans, ids.shape[1])


def test_qa_score_returns_fractions_on_hand_made_predictions(hand_made):
    tok, examples, model = hand_made
    result = score(task_spec("mlqa"), model, tok, examples, 32)
    assert result == {"exact_match": pytest.approx(1 / 3), "f1": pytest.approx(5 / 9), "examples": 3}


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_qa_score_on_the_device(hand_made):
    """The scores live on the GPU: the span mask must be built there too."""
    tok, examples, model = hand_made
    result = score(task_spec("mlqa"), model.to("cuda"), tok, examples, 32)
    assert result == {"exact_match": pytest.approx(1 / 3), "f1": pytest.approx(5 / 9), "examples": 3}
