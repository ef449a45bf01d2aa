"""The stages by name: one registry and one entry point behind every launcher.

    python -m mmadapt.stages adapt --help
    deepspeed --num_gpus 2 launchers/adapt.py ...        (the same entry point, under the launcher)

A training stage is a ``Stage`` (runner.py) run by ``runner.run``; ``evaluate`` trains nothing and is
its own ``run(sections)``. Every entry parses the stage's typed config sections the same way and turns a
bad input into one line on stderr and exit status 2.
"""

from __future__ import annotations

import functools
import importlib
import sys
from dataclasses import dataclass


@dataclass(frozen=True)
class StageSpec:
    name: str  # the launcher's name: launchers/<name>.py
    module: str  # mmadapt.stages.<module>
    target: str  # its Stage class, or for a stage that trains nothing, its run(sections) function
    sections: str = ""  # the module attribute holding the sections of a non-training stage


STAGES = {spec.name: spec for spec in (
    StageSpec("minijoint", "pretrain", "Pretrain"),
    StageSpec("minipost", "minipost", "MiniPost"),
    StageSpec("adapt", "adapt", "Adapt"),
    StageSpec("finetune", "finetune", "Finetune"),
    StageSpec("evaluate", "evaluate", "run", sections="SECTIONS"),
)}


def interface(name: str) -> tuple:
    """(module doc, config sections, hidden fields, job) of stage ``name``: what its command line parses and
    what runs the parsed sections; the orchestrator checks a plan against the same parser."""
    from .runner import Stage, run

    spec = STAGES[name]
    module = importlib.import_module(f"{__name__}.{spec.module}")
    target = getattr(module, spec.target)
    if isinstance(target, type) and issubclass(target, Stage):
        return module.__doc__, target.sections, target.hidden_flags, lambda s: run(target(s))
    return module.__doc__, getattr(module, spec.sections), (), target


def parser(name: str, raise_errors: bool = False):
    """Stage ``name``'s argument parser; ``raise_errors``: a bad flag raises ConfigError instead of exiting."""
    from ..config import build_parser

    doc, sections, hidden, _ = interface(name)
    return build_parser(name, doc.split("\n\n")[0], sections, hidden=hidden, raise_errors=raise_errors)


def main(name: str, argv=None) -> int:
    """Run stage ``name`` with ``argv`` (default: the command line); returns the exit status."""
    from .runner import stage_main

    if name not in STAGES:
        print(f"error: no stage {name!r}; fix: use one of {', '.join(STAGES)}", file=sys.stderr)
        return 2
    doc, sections, hidden, job = interface(name)
    return stage_main(name, doc, sections, job, argv, hidden)


def entry(name: str):
    """``main`` for one stage: ``entry("adapt")(argv)``."""
    return functools.partial(main, name)
