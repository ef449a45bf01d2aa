#!/usr/bin/env bash
# `make demo`: the main job on the built-in default (see mmadapt/demo.py).
set -euo pipefail
exec .venv/bin/mmadapt demo --output "${1:-runs/demo}" --nproc "${2:-2}"
