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
        return self.rows(input_ids, [generator])

    def rows(self, input_ids: torch.Tensor, generators: list):
        """Mask a batch: row i's draws come from ``generators[i]`` (one generator: the whole batch from it).

        The draws are made per row in a fixed order (choice, action, replacement), so a row's masking is
        the same whatever batch it is in; the masking itself is done once for the whole batch (per-row
        torch calls cost about 0.3 ms a row on CPU, more than the draws)."""
        if len(generators) == 1:
            g = generators[0]
            draws = [torch.rand(input_ids.shape, generator=g), torch.rand(input_ids.shape, generator=g),
                     torch.randint(len(self.ordinary_ids), input_ids.shape, generator=g)]
        else:
            shape = input_ids.shape[1:]
            per_row = [(torch.rand(shape, generator=g), torch.rand(shape, generator=g),
                        torch.randint(len(self.ordinary_ids), shape, generator=g)) for g in generators]
            draws = [torch.stack(d) for d in zip(*per_row)]
        choice, action, picks = draws
        inputs = input_ids.clone()
        labels = input_ids.clone()
        candidates = ~torch.isin(input_ids, self.special_ids)
        chosen = (choice < self.probability) & candidates
        labels[~chosen] = IGNORE_INDEX
        to_mask = chosen & (action < 0.8)
        to_random = chosen & (action >= 0.8) & (action < 0.9)
        inputs[to_mask] = self.mask_id
        inputs[to_random] = self.ordinary_ids[picks][to_random]
        return inputs, labels
