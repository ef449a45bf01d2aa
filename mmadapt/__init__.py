"""mmadapt: extend pretrained masked language models to new languages by mini-model adaptation."""

import os
import sys

__version__ = "0.1.0"

# DeepSpeed JIT-builds its ops into TORCH_EXTENSIONS_DIR. One directory per environment: a shared
# ~/.cache would be rebuilt back and forth by every venv (the build is keyed by source paths), and
# `make setup` prebuilds into this one so that ranks never compile concurrently at run time.
os.environ.setdefault("TORCH_EXTENSIONS_DIR", os.path.join(sys.prefix, "torch_extensions"))

# The environment's own tools first on PATH: torch builds those ops with whichever `ninja` PATH finds
# first, and the pinned one and a system one hash build commands differently, so commands started with
# and without the venv on PATH rebuilt the ops back and forth (see mmadapt/ops.py).
_env_bin = os.path.dirname(sys.executable)
if os.path.isfile(os.path.join(_env_bin, "ninja")) and \
        os.environ.get("PATH", "").split(os.pathsep)[0] != _env_bin:
    os.environ["PATH"] = _env_bin + os.pathsep + os.environ.get("PATH", "")
