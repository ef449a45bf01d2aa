"""``python -m mmadapt.stages NAME [flags]``: any stage by its registry name (see __init__.py)."""

import sys

from ..engine import exit_process
from . import STAGES, main

if len(sys.argv) < 2 or sys.argv[1] not in STAGES:
    print(f"usage: python -m mmadapt.stages {{{','.join(STAGES)}}} [flags]", file=sys.stderr)
    exit_process(2)
exit_process(main(sys.argv[1], sys.argv[2:]))
