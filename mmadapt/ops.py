"""DeepSpeed's JIT-built C++ ops, loaded so that no run rebuilds them needlessly or waits on a dead lock.

DeepSpeed compiles its ops (the fused Adam, the CPU shared-memory all-reduce) with torch's
cpp_extension on first use, into ``TORCH_EXTENSIONS_DIR`` (``mmadapt/__init__.py`` keeps one per
environment, and ``make setup`` builds them there). Two traps, both seen here:

* torch guards a build with a bare lock file (``<op>/lock``). A process killed while holding it (Ctrl-C,
  a timeout, the OOM killer) leaves it behind, and every later run polls for it forever, silently.
  So every mmadapt process loads the ops inside one ``flock`` on ``TORCH_EXTENSIONS_DIR/.mmadapt-ops.lock``:
  the kernel drops a flock when its holder dies, and while we hold it no other mmadapt process can be
  building, so any ``<op>/lock`` found then is stale and is removed (with a warning). Waiting for a live
  builder is announced, never silent, and bounded.
* ninja decides whether to rebuild from a hash of each command in ``.ninja_log``, and ninja 1.12 changed
  that hash. The venv's pinned ninja and the system's older one then rebuilt the ops back and forth
  (about 50 s of both cores each time) depending on whose ``bin`` came first on PATH. ``mmadapt/__init__``
  puts the environment's own ``bin`` first, so every way of starting a command uses the same ninja.

And one cost: DeepSpeed's CPU op builder asks py-cpuinfo for the CPU twice per load (its ``-march`` and SIMD
flags), and py-cpuinfo answers each time from a fresh Python subprocess: 1.2 s a call here, 2.5 s of every
rank's start. The answer is kept beside the ops (``.mmadapt-cpuinfo.json``) under the identity of the CPU as
``/proc/cpuinfo`` gives it, and handed to the builders while they load; another CPU asks afresh.
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import hashlib
import json
import os
import sys
import time
import warnings

from .artifacts import write_json
from .errors import ConfigError

LOCK_NAME = ".mmadapt-ops.lock"
CPU_INFO_NAME = ".mmadapt-cpuinfo.json"
CPU_CLOCK_FIELDS = ("cpu mhz", "bogomips")  # /proc/cpuinfo lines that change while the machine runs
WAIT_LIMIT_S = float(os.environ.get("MMADAPT_OPS_WAIT_S", 600))  # a fresh build of every op takes ~2 min
REPORT_EVERY_S = 15.0


def op_builder_names(offload: bool = False) -> list:
    """The ops our DeepSpeed configs use on this accelerator."""
    from deepspeed.accelerator import get_accelerator

    names = ["FusedAdamBuilder"]
    if get_accelerator().device_name() == "cpu":
        names.append("ShareMemCommBuilder")  # DeepSpeed's CPU all-reduce, loaded by init_distributed
    if offload:
        names.append("CPUAdamBuilder")
    return names


def extensions_dir() -> str:
    return os.environ["TORCH_EXTENSIONS_DIR"]  # always set on import of mmadapt


class OpsLock:
    """An exclusive flock on ``<dir>/.mmadapt-ops.lock``, the holder's pid written in it."""

    def __init__(self, directory: str, limit_s: float = WAIT_LIMIT_S):
        self.path = os.path.join(directory, LOCK_NAME)
        self.limit_s = limit_s
        self.fd = None

    def __enter__(self) -> "OpsLock":
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        start = last_report = time.monotonic()
        while True:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                waited = time.monotonic() - start
                if waited > self.limit_s:
                    os.close(self.fd)
                    raise ConfigError(f"DeepSpeed ops: waited {waited:.0f} s for {self.path}, held by pid "
                                      f"{self._holder()} (building ops); fix: let that process finish or stop "
                                      "it, then run again") from None
                if time.monotonic() - last_report >= REPORT_EVERY_S:
                    print(f"waiting for pid {self._holder()} to finish building DeepSpeed ops "
                          f"({self.path}, {waited:.0f} s)", file=sys.stderr, flush=True)
                    last_report = time.monotonic()
                time.sleep(0.2)
        os.ftruncate(self.fd, 0)
        os.write(self.fd, str(os.getpid()).encode())
        return self

    def _holder(self) -> str:
        try:
            with open(self.path, encoding="utf-8") as fh:
                return fh.read().strip() or "?"
        except OSError:
            return "?"

    def __exit__(self, *exc) -> None:
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)


def clear_stale_build_locks(directory: str) -> list:
    """Remove torch's ``<op>/lock`` files. Call only while holding OpsLock: their makers are dead."""
    removed = []
    for path in glob.glob(os.path.join(directory, "*", "lock")):
        warnings.warn(f"removing stale DeepSpeed op build lock {path} (left by a process stopped while it "
                      "built the op); the op is rebuilt if it is incomplete", stacklevel=2)
        os.remove(path)
        removed.append(path)
    return removed


def cpu_identity(proc_cpuinfo: str) -> str:
    """A digest of /proc/cpuinfo's text without its clock lines: equal for the same CPUs, whatever their speed now."""
    kept = [line for line in proc_cpuinfo.splitlines() if not line.strip().lower().startswith(CPU_CLOCK_FIELDS)]
    return hashlib.sha256("\n".join(kept).encode()).hexdigest()


def cached_cpu_info(directory: str, ask, proc_cpuinfo: str | None = None) -> dict | None:
    """py-cpuinfo's answer (``ask()``) for this CPU, read from ``<directory>/.mmadapt-cpuinfo.json`` when that
    was written for the same CPU, else asked and written. None where /proc/cpuinfo cannot be read (no key to
    trust a stored answer by). Call while holding OpsLock: one writer at a time."""
    if proc_cpuinfo is None:
        try:
            with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
                proc_cpuinfo = fh.read()
        except OSError:
            return None
    key, path = cpu_identity(proc_cpuinfo), os.path.join(directory, CPU_INFO_NAME)
    try:
        with open(path, encoding="utf-8") as fh:
            stored = json.load(fh)
        if stored.get("cpu") == key and isinstance(stored.get("info"), dict):
            return stored["info"]
    except (OSError, ValueError, AttributeError):
        pass  # none yet, or unreadable: ask, and write it anew
    info = ask()
    try:
        write_json(path, {"cpu": key, "info": info})
    except OSError:
        pass  # a read-only extensions directory: asked again next time, nothing else changes
    return info


@contextlib.contextmanager
def cpu_info_answered(directory: str):
    """While the builders load, py-cpuinfo answers from the cache above (it is put back after)."""
    import cpuinfo

    real = cpuinfo.get_cpu_info
    try:
        info = cached_cpu_info(directory, real)
    except Exception:  # noqa: BLE001 - py-cpuinfo failed: DeepSpeed's builders ask it themselves and fall back to lscpu
        info = None
    if info is not None:
        cpuinfo.get_cpu_info = lambda: json.loads(json.dumps(info))  # a fresh copy: callers may edit theirs
    try:
        yield
    finally:
        cpuinfo.get_cpu_info = real


def load_ops(offload: bool = False, verbose: bool = False) -> list:
    """Load (building if needed) the ops a run will use, before DeepSpeed asks for them.

    DeepSpeed caches a loaded op per process (``OpBuilder._loaded_ops``), so its own later loads are
    free. Returns the names of the ops loaded.
    """
    from deepspeed.accelerator import get_accelerator

    acc = get_accelerator()
    directory = extensions_dir()
    loaded = []
    with OpsLock(directory), cpu_info_answered(directory):
        clear_stale_build_locks(directory)
        for name in op_builder_names(offload):
            builder = acc.create_op_builder(name)
            if builder is None or not builder.is_compatible(verbose=False):
                continue
            builder.load(verbose=verbose)
            loaded.append(name)
    return loaded
