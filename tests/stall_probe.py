"""Run by tests/test_failures.py under the deepspeed launcher: pretraining through the real runner, where
rank ``STALL_RANK`` stops after step ``STALL_STEP`` (as a hung or dying worker would), tells the test so by
writing its pid to the FIFO ``STALL_FIFO`` and waits there to be killed. The test waits on that FIFO, an
event, instead of polling the run's files. Usage: stall_probe.py [minijoint flags]."""

import os
import signal
import sys

from mmadapt.engine import exit_process
from mmadapt.stages.pretrain import Pretrain
from mmadapt.stages.runner import run, stage_main


class Stalling(Pretrain):
    def after_step(self, engine):
        import torch.distributed as dist

        if dist.get_rank() != int(os.environ["STALL_RANK"]):
            return None

        def stall(step: int) -> None:
            if step == int(os.environ["STALL_STEP"]):
                with open(os.environ["STALL_FIFO"], "w") as fifo:
                    fifo.write(f"{os.getpid()}\n")
                while True:
                    signal.pause()
        return stall


if __name__ == "__main__":
    exit_process(stage_main("minijoint", "", Stalling.sections, lambda s: run(Stalling(s)), sys.argv[1:],
                            Stalling.hidden_flags))
