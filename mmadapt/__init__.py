"""mmadapt: extend pretrained masked language models to new languages by mini-model adaptation."""

import os
import sys

__version__ = "0.1.0"

# DeepSpeed JIT-builds its ops into TORCH_EXTENSIONS_DIR. One directory per environment: a shared
# ~/.cache would be rebuilt back and forth by every venv (the build is keyed by source paths), and
# `make setup` prebuilds into this one so that ranks never compile concurrently at run time.
os.environ.setdefault("TORCH_EXTENSIONS_DIR", os.path.join(sys.prefix, "torch_extensions"))
