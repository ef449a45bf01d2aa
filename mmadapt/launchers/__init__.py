"""Thin entry points for the ``deepspeed`` launcher, one per stage.

From a checkout: ``deepspeed --num_gpus 2 launchers/minijoint.py ...`` (``launchers/`` links here);
installed: ``deepspeed --num_gpus 2 --module mmadapt.launchers.minijoint ...``.
"""
