"""One orchestrator for every plan of stages (`mmadapt demo`, `mmadapt pipeline`, the benchmarks).

A plan names each stage's settings by the stage's own config fields ({"max_steps": 300, "lr": 1e-3}).
``StageCall`` parses them with the stage's own parser into its typed config sections, so a misspelt field,
a wrong type or a field the stage does not read fails when the plan is made, with one line naming the
stage and the field, not after the stages before it ran; the same values become the launcher's flags
one way (``as_flags``). ``Runs`` runs the calls of one run directory under the one skip/resume policy
(launch.run_stage) and keeps their seconds (a kept stage's as recorded when it ran).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Mapping

from .errors import ConfigError


def as_flags(values: Mapping[str, Any], where: str = "") -> list:
    """Field values as command-line flags: ``key: true`` -> --key, ``key: false`` -> --no_key (every switch
    has both), lists -> --key a b. What no flag can say (null, a mapping) is refused, not dropped."""
    out = []
    for key, value in (values or {}).items():
        if value is True:
            out.append(f"--{key}")
        elif value is False:
            out.append(f"--no_{key}")
        elif value is None or isinstance(value, dict):
            raise ConfigError(f"{where or 'stage settings'}: `{key}: {value!r}` cannot be passed as a flag; fix: "
                              "give a value, or remove the key to keep the stage's default")
        elif isinstance(value, (list, tuple)):
            out += [f"--{key}", *map(str, value)]
        else:
            out += [f"--{key}", str(value)]
    return out


@dataclass
class StageCall:
    """One run of a stage: its name in the run directory, the stage (a key of mmadapt.stages.STAGES), and
    its settings by field name. ``sections`` is the stage's typed config, parsed as the stage will parse
    it; ``where`` names the settings' origin in errors (a config file's key, a flag)."""

    name: str
    stage: str
    values: dict
    where: str = ""
    sections: dict = field(init=False, repr=False)

    def __post_init__(self):
        from .config import parse_sections
        from .stages import STAGES, interface, parser

        if self.stage not in STAGES:
            raise ConfigError(f"{self.where or self.name}: no stage {self.stage!r}; fix: use one of {', '.join(STAGES)}")
        where = self.where or self.name
        try:
            self.sections = parse_sections(parser(self.stage, raise_errors=True), self.argv,
                                           interface(self.stage)[1])
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None

    @property
    def argv(self) -> list:
        return as_flags(self.values, self.where or self.name)

    def config(self, section: str):
        """One typed section (``"train"``, ``"data"``, ``"adapt"``, ...) as the stage will see it."""
        return self.sections[section]


class Runs:
    """The stages of one plan in one run directory (claimed by the caller): each kept when complete,
    resumed from its last checkpoint when interrupted, else run (launch.run_stage), on ``nproc`` ranks."""

    def __init__(self, run_dir: str, nproc: int, reuse: bool = True):
        self.dir = os.path.abspath(run_dir)
        self.nproc = nproc
        self.reuse = reuse
        self.seconds: dict = {}

    def path(self, *parts) -> str:
        return os.path.join(self.dir, *parts)

    def call(self, name: str, stage: str, values: dict, where: str = "") -> StageCall:
        """The call that would write ``run_dir/name``, checked now (its output directory filled in)."""
        return StageCall(name, stage, {**values, "output_dir": self.path(name)}, where)

    def run(self, call: StageCall) -> str:
        from .artifacts import recorded_stage_seconds
        from .launch import run_stage

        seconds = run_stage(self.dir, call.name, call.stage, call.argv, self.nproc, reuse=self.reuse)
        if seconds is None:  # kept: its seconds as recorded when it ran (none from before the record)
            seconds = recorded_stage_seconds(self.dir).get(call.name, {}).get("seconds")
        if seconds is not None:
            self.seconds[call.name] = seconds
        return self.path(call.name)

    def stage(self, name: str, stage: str, values: dict, where: str = "") -> str:
        """Check and run one stage; returns its output directory."""
        return self.run(self.call(name, stage, values, where))
