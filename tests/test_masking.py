"""RoBERTa masking proportions, checked statistically over ~100k tokens."""

import torch

from mmadapt.masking import Masker
from mmadapt.model import IGNORE_INDEX


def test_masking_proportions_and_special_tokens(text_and_tokenizer):
    _, _, tok = text_and_tokenizer
    masker = Masker(tok, 0.15)
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(4, len(tok) - 1, (400, 256), generator=g)
    ids[:, 0], ids[:, -1] = tok.bos_token_id, tok.eos_token_id
    ids[:50, -40:] = tok.pad_token_id
    inputs, labels = masker(ids, torch.Generator().manual_seed(1))

    special = torch.isin(ids, torch.tensor(tok.all_special_ids))
    chosen = labels.ne(IGNORE_INDEX)
    assert not (chosen & special).any(), "special or padding token chosen"
    assert torch.equal(labels[chosen], ids[chosen])
    n_candidates = (~special).sum().item()
    rate = chosen.sum().item() / n_candidates
    n = chosen.sum().item()
    # binomial standard errors: rate ~0.0011, shares ~0.004; allow 4 of them
    assert abs(rate - 0.15) < 0.005, rate
    masked = (inputs == tok.mask_token_id) & chosen
    kept = (inputs == ids) & chosen
    replaced = chosen & ~masked & ~kept
    assert abs(masked.sum().item() / n - 0.8) < 0.01
    # a random replacement can draw the original token (1 / ordinary vocab), which then looks "kept"
    p_same = 1 / len(masker.ordinary_ids)
    assert abs(kept.sum().item() / n - (0.1 + 0.1 * p_same)) < 0.01
    assert abs(replaced.sum().item() / n - 0.1 * (1 - p_same)) < 0.01
    assert not torch.isin(inputs[replaced], torch.tensor(tok.all_special_ids)).any()
    assert torch.equal(inputs[~chosen], ids[~chosen]), "unchosen tokens must be untouched"


def test_masking_is_a_function_of_the_generator(text_and_tokenizer):
    _, _, tok = text_and_tokenizer
    masker = Masker(tok)
    ids = torch.randint(4, len(tok) - 1, (8, 64))
    a = masker(ids, torch.Generator().manual_seed(5))
    b = masker(ids, torch.Generator().manual_seed(5))
    c = masker(ids, torch.Generator().manual_seed(6))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[1], c[1])


def test_a_row_masks_alike_alone_and_in_a_batch(text_and_tokenizer):
    """Masker.rows masks the whole batch at once from per-row generators: each row must come out as it
    does masked alone (what keeps resume and world-size changes exact)."""
    _, _, tok = text_and_tokenizer
    masker = Masker(tok, 0.15)
    ids = torch.randint(4, len(tok) - 1, (6, 40), generator=torch.Generator().manual_seed(3))
    ids[2, -10:] = tok.pad_token_id
    batch_inputs, batch_labels = masker.rows(ids, [torch.Generator().manual_seed(100 + i) for i in range(6)])
    for i in range(6):
        alone_inputs, alone_labels = masker(ids[i:i + 1], torch.Generator().manual_seed(100 + i))
        assert torch.equal(batch_inputs[i:i + 1], alone_inputs) and torch.equal(batch_labels[i:i + 1], alone_labels)
    # and the rows differ from each other (each its own stream)
    assert not torch.equal(batch_labels[0], batch_labels[1])
