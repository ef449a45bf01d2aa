"""Run by tests/test_runner.py under the deepspeed launcher: pretraining with the token embeddings
frozen, through the real runner. With TAMPER=1 in the environment it changes a frozen weight after step 2
(as a bug in a stage would); without, it leaves it alone. Usage: tamper_probe.py [minijoint flags]."""

import os
import sys

import torch

from mmadapt.engine import exit_process
from mmadapt.stages.pretrain import Pretrain
from mmadapt.stages.runner import run, stage_main

FROZEN = "roberta.embeddings.word_embeddings.weight"


class FrozenEmbeddings(Pretrain):
    def trainable(self, name: str) -> bool:
        return name != FROZEN

    def after_step(self, engine):
        if os.environ.get("TAMPER") != "1":
            return None

        def tamper(step: int) -> None:
            if step == 2:
                import deepspeed

                w = dict(engine.module.named_parameters())[FROZEN]
                with deepspeed.zero.GatheredParameters([w], modifier_rank=0), torch.no_grad():
                    if torch.distributed.get_rank() == 0:
                        w[5] += 1.0
        return tamper


if __name__ == "__main__":
    exit_process(stage_main("minijoint", "", FrozenEmbeddings.sections, lambda s: run(FrozenEmbeddings(s)),
                            sys.argv[1:], FrozenEmbeddings.hidden_flags))
