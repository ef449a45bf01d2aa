"""XLM-R sequence classification pooled by the mean of the non-padding final states.

What mmadapt's ``tasks.PairClassifier`` with pooling "mean" computes: the mean of the final states over
the tokens that are not padding, then Hugging Face's RoBERTa head (dropout, dense, tanh, dropout,
out_proj), whose weights it keeps under the same names.

This file is copied as it is into every exported task model fine-tuned with ``--pooling mean`` (see
``hf_io.export_adapted_task_model``) and named in its config's ``auto_map``, so that
``AutoModelForSequenceClassification.from_pretrained(DIR, trust_remote_code=True)`` and
``pipeline("text-classification", model=DIR, trust_remote_code=True)`` load it offline. So it imports
nothing from mmadapt. The config has a model type of its own: under "xlm-roberta", transformers would load
such a directory without trust_remote_code as its own <s>-pooled class and predict other labels without a
word; under a type it does not know, it refuses instead.
"""

from __future__ import annotations

import torch
from torch.nn import CrossEntropyLoss
from transformers import XLMRobertaConfig, XLMRobertaForSequenceClassification
from transformers.modeling_outputs import SequenceClassifierOutput


class MeanPooledXLMRobertaConfig(XLMRobertaConfig):
    """XLM-R's config under a model type transformers does not know (see above: no silent <s> pooling)."""

    model_type = "xlm-roberta-mean-pooled"


class MeanPooledXLMRobertaForSequenceClassification(XLMRobertaForSequenceClassification):
    """XLMRobertaForSequenceClassification whose head reads the mean of the non-padding states, not <s>."""

    config_class = MeanPooledXLMRobertaConfig

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None,
                inputs_embeds=None, labels=None, **kwargs) -> SequenceClassifierOutput:
        outputs = self.roberta(input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
                               position_ids=position_ids, inputs_embeds=inputs_embeds, return_dict=True, **kwargs)
        hidden = outputs.last_hidden_state
        # Padding is the pad token, as mmadapt counts it; given only embeddings, the attention mask says.
        if input_ids is not None:
            keep = input_ids.ne(self.config.pad_token_id)
        elif attention_mask is not None:
            keep = attention_mask.bool()
        else:
            keep = torch.ones(hidden.shape[:2], dtype=torch.bool, device=hidden.device)
        keep = keep.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * keep).sum(1) / keep.sum(1)
        logits = self.classifier(pooled[:, None])  # the head reads position 0: here the mean
        loss = None
        if labels is not None:
            loss = CrossEntropyLoss()(logits.view(-1, self.num_labels), labels.to(logits.device).view(-1))
        return SequenceClassifierOutput(loss=loss, logits=logits, hidden_states=outputs.hidden_states,
                                        attentions=outputs.attentions)
