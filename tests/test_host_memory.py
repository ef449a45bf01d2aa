"""glibc's mmap threshold held fixed where MMADAPT_MALLOC_MMAP_THRESHOLD asks (mmadapt.engine.configure_malloc). glibc's own rule
raises its threshold to the size of each mapped block freed (up to 32 MiB), so once ZeRO-3 has freed one
gathered tensor, later tensors of that size come from the heap, where a freed one under a live allocation
stays resident (benchmarks/RESULTS.md, "Host memory under ZeRO-3": up to 2 GiB a rank). The known answer,
read from glibc's own accounting (mallinfo2's bytes in mapped blocks): after a 16 MiB block is freed, an
8 MiB block is mapped (and given back on free) only when the threshold is held."""

import json
import os
import subprocess
import sys

import pytest

from conftest import REPO

PATTERN = r"""
import ctypes, json, sys
from mmadapt import engine
applied = engine.configure_malloc()
class MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                "fsmblks", "uordblks", "fordblks", "keepcost")]
libc = ctypes.CDLL(None)
libc.malloc.restype, libc.malloc.argtypes, libc.free.argtypes = ctypes.c_void_p, [ctypes.c_size_t], [ctypes.c_void_p]
libc.mallinfo2.restype = MallInfo2
mapped = lambda: libc.mallinfo2().hblkhd / 2 ** 20
libc.free(libc.malloc(16 << 20))  # glibc's rule: the threshold rises to 16 MiB
before = mapped()
block = libc.malloc(8 << 20)
alive = mapped() - before
libc.free(block)
print(json.dumps({"applied": applied, "mapped_mib": alive, "mapped_after_free_mib": mapped() - before}))
"""

GLIBC_MALLINFO2 = sys.platform.startswith("linux") and hasattr(__import__("ctypes").CDLL(None), "mallinfo2")


def run_pattern(value) -> dict:
    """The pattern in a fresh process, MMADAPT_MALLOC_MMAP_THRESHOLD set to ``value`` (None: unset)."""
    env = {k: v for k, v in os.environ.items() if k != "MMADAPT_MALLOC_MMAP_THRESHOLD"}
    env.update(PYTHONPATH=REPO, **({} if value is None else {"MMADAPT_MALLOC_MMAP_THRESHOLD": value}))
    proc = subprocess.run([sys.executable, "-c", PATTERN], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not GLIBC_MALLINFO2, reason="glibc 2.33+ (mallinfo2)")
def test_a_held_threshold_maps_what_glibcs_rule_puts_on_the_heap():
    held = run_pattern("131072")
    assert held["applied"] == 131072, held
    assert held["mapped_mib"] >= 8 and held["mapped_after_free_mib"] == 0, held  # mapped, and given back
    for value in (None, "off"):  # unset (the default) and off: glibc's rule, the problem's cause
        kept = run_pattern(value)
        assert kept["applied"] is None and kept["mapped_mib"] == 0, (value, kept)


@pytest.mark.parametrize("value", ["lots", "0", "-5", str(64 * 1024 * 1024)])
def test_bad_threshold_is_one_line_naming_the_variable(value, monkeypatch):
    from mmadapt.engine import configure_malloc
    from mmadapt.errors import ConfigError

    monkeypatch.setenv("MMADAPT_MALLOC_MMAP_THRESHOLD", value)
    with pytest.raises(ConfigError) as err:
        configure_malloc()
    message = str(err.value)
    assert "\n" not in message and "MMADAPT_MALLOC_MMAP_THRESHOLD" in message and "fix:" in message
