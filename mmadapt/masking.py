"""RoBERTa dynamic masking: 15% of non-special tokens; of those 80% <mask>, 10% random, 10% kept."""

from __future__ import annotations

import torch

from .model import IGNORE_INDEX


class Masker:
    def __init__(self, tokenizer, probability: float = 0.15):
        self.probability = probability
        self.mask_id = tokenizer.mask_token_id
        self.vocab_size = len(tokenizer)
        self.special_ids = torch.tensor(sorted(set(tokenizer.all_special_ids)))
        # Random replacements come from ordinary pieces only: never a special or padding token.
        ordinary = torch.ones(self.vocab_size, dtype=torch.bool)
        ordinary[self.special_ids] = False
        self.ordinary_ids = ordinary.nonzero().squeeze(1)

    def __call__(self, input_ids: torch.Tensor, generator: torch.Generator):
        """Return (masked inputs, labels with IGNORE_INDEX where nothing is predicted)."""
        inputs = input_ids.clone()
        labels = input_ids.clone()
        candidates = ~torch.isin(input_ids, self.special_ids)
        chosen = (torch.rand(input_ids.shape, generator=generator) < self.probability) & candidates
        labels[~chosen] = IGNORE_INDEX
        action = torch.rand(input_ids.shape, generator=generator)
        to_mask = chosen & (action < 0.8)
        to_random = chosen & (action >= 0.8) & (action < 0.9)
        inputs[to_mask] = self.mask_id
        picks = torch.randint(len(self.ordinary_ids), input_ids.shape, generator=generator)
        inputs[to_random] = self.ordinary_ids[picks][to_random]
        return inputs, labels
