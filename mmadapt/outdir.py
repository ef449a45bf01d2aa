"""Output directories: written whole or not at all, and never replacing what this program did not make.

Two kinds:

* A **file set** (a tokenizer, a Hugging Face export, the generator's benchmark files): written into a
  temporary sibling and swapped into place. An existing directory is replaced only when every entry in
  it is one of the names this writer makes; anything else (a user's file, ``--output .``) is refused.
* A **run directory** of a multi-stage command (``mmadapt demo``, ``mmadapt pipeline``, the benchmarks):
  claimed by writing a marker file when it is created. A non-empty directory without the marker is
  refused; inside a claimed one a command removes only the entries it makes itself.

Both refusals are a ConfigError: one line naming the directory and the fix, exit status 2, nothing touched.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from typing import Collection, Iterator

from .errors import ConfigError


def foreign_entries(path: str, own_names: Collection[str]) -> list:
    """Entries of an existing directory that are not among ``own_names`` (sorted; [] if absent/empty)."""
    if not os.path.exists(path):
        return []
    if not os.path.isdir(path):
        return [os.path.basename(path)]
    return sorted(set(os.listdir(path)) - set(own_names))


def check_replaceable(path: str, own_names: Collection[str], flag: str) -> None:
    """Refuse to replace ``path`` if it holds anything this writer does not make."""
    if os.path.exists(path) and not os.path.isdir(path):
        raise ConfigError(f"{flag} {path}: exists and is not a directory; fix: choose a new directory")
    foreign = foreign_entries(path, own_names)
    if foreign:
        shown = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
        raise ConfigError(f"{flag} {path}: holds files this command did not write ({shown}); fix: choose a "
                          "new or empty directory")


@contextmanager
def replaced_directory(path: str, own_names: Collection[str], flag: str = "--output") -> Iterator[str]:
    """Yield a fresh temporary directory; on success it becomes ``path`` in one rename.

    An earlier ``path`` is swapped out and deleted only after the new one is in place (and only if it
    held nothing but ``own_names``, checked before any work). On failure ``path`` is left as it was.
    """
    path = os.path.abspath(path)
    check_replaceable(path, own_names, flag)
    parent = os.path.dirname(path)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}.tmp-", dir=parent)
    old = None
    try:
        os.chmod(tmp, 0o755)
        yield tmp
        check_replaceable(path, own_names, flag)  # nothing foreign appeared while we worked
        if os.path.exists(path):
            old = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}.old-", dir=parent)
            os.rename(path, os.path.join(old, "previous"))
        try:
            os.rename(tmp, path)
        except OSError:
            if old is not None:
                os.rename(os.path.join(old, "previous"), path)  # put the earlier output back
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


def check_claimable(path: str, marker: str, flag: str = "--output") -> None:
    """Refuse a run directory that exists, is not empty and lacks this command's marker."""
    if os.path.exists(path) and not os.path.isdir(path):
        raise ConfigError(f"{flag} {path}: exists and is not a directory; fix: choose a new directory")
    if os.path.isdir(path) and os.listdir(path) and not os.path.isfile(os.path.join(path, marker)):
        raise ConfigError(f"{flag} {path}: not empty and not made by this command (no {marker}); fix: "
                          "choose a new or empty directory")


def claim_run_dir(path: str, marker: str, flag: str = "--output") -> None:
    """Create ``path`` with ``marker`` in it, or accept it if it is empty or already carries the marker."""
    check_claimable(path, marker, flag)
    marker_path = os.path.join(path, marker)
    os.makedirs(path, exist_ok=True)
    if not os.path.isfile(marker_path):
        with open(marker_path, "w", encoding="utf-8") as fh:
            fh.write("made by mmadapt; the command that made this directory may replace what it wrote here\n")


def remove_own_entries(path: str, names: Collection[str]) -> None:
    """Remove the named entries (files or directories) of a claimed run directory; nothing else."""
    for name in names:
        entry = os.path.join(path, name)
        if os.path.isdir(entry) and not os.path.islink(entry):
            shutil.rmtree(entry)
        elif os.path.lexists(entry):
            os.remove(entry)
