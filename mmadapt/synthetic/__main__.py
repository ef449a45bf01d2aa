"""``python -m mmadapt.synthetic``: write a language pair (see __init__.py)."""

import sys

from .output import main

sys.exit(main())
