"""The `mmadapt` command's own subcommands."""

import json
import os
import subprocess
import sys

MMADAPT = os.path.join(os.path.dirname(sys.executable), "mmadapt")


def test_info_reports_versions_accelerator_and_ops():
    proc = subprocess.run([MMADAPT, "info"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout[proc.stdout.index("{"):])
    import deepspeed
    import torch
    assert info["torch"] == torch.__version__ and info["deepspeed"] == deepspeed.__version__
    assert info["accelerator"] in ("cpu", "cuda") and info["communication_backend"] in ("gloo", "nccl", "ccl")
    assert set(info["deepspeed_ops"]) >= {"fused_adam", "cpu_adam"}


def test_unknown_subcommand_is_an_error():
    proc = subprocess.run([MMADAPT, "nonsense"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "invalid choice" in proc.stderr
