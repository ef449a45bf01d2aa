"""DeepSpeed's JIT ops: a run stopped inside the op build leaves no lock that later runs wait on, a live
builder is waited for aloud and within a bound, and the prebuilt ops load without a rebuild whichever
ninja the caller's PATH finds first."""

import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from mmadapt.ops import LOCK_NAME, OpsLock

PY = sys.executable
PREBUILT = os.environ["TORCH_EXTENSIONS_DIR"]  # set by `import mmadapt`; `make setup` built the ops there


@pytest.fixture
def ext_dir(tmp_path):
    """A private copy of the prebuilt ops (mtimes kept, so ninja sees them up to date)."""
    if not os.path.isdir(os.path.join(PREBUILT, "fused_adam")):
        pytest.skip("no prebuilt ops (run `make setup`)")
    out = tmp_path / "torch_extensions"
    shutil.copytree(PREBUILT, out, ignore=shutil.ignore_patterns(LOCK_NAME))
    return out


def prebuild(ext_dir, path=None, **kw):
    env = {**os.environ, "TORCH_EXTENSIONS_DIR": str(ext_dir), "PYTHONWARNINGS": "default"}
    if path is not None:
        env["PATH"] = path
    return subprocess.Popen([PY, "-m", "mmadapt.prebuild"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True, **kw)


def test_a_run_killed_inside_the_op_build_does_not_block_the_next(ext_dir):
    op = ext_dir / "deepspeed_shm_comm"
    (op / "shm.o").unlink()  # the next load must compile: a window to stop it in
    killed = prebuild(ext_dir)
    deadline = time.monotonic() + 120
    while not (op / "lock").exists():
        assert killed.poll() is None and time.monotonic() < deadline, "the build never took its lock"
        time.sleep(0.05)
    os.killpg(killed.pid, signal.SIGKILL)  # the run and its compiler, as Ctrl-C or the OOM killer would
    killed.wait()
    assert (op / "lock").exists()  # what used to make every later run wait forever

    nxt = prebuild(ext_dir)
    out, err = nxt.communicate(timeout=300)
    assert nxt.returncode == 0, err[-2000:]
    assert "removing stale DeepSpeed op build lock" in err and str(op / "lock") in err
    assert "ShareMemCommBuilder ready" in out
    assert not (op / "lock").exists() and (op / "deepspeed_shm_comm.so").exists()


def test_a_live_builder_is_waited_for_aloud_and_within_a_bound(ext_dir):
    with OpsLock(str(ext_dir)):  # this process is "building"
        env = {**os.environ, "TORCH_EXTENSIONS_DIR": str(ext_dir), "MMADAPT_OPS_WAIT_S": "3"}
        proc = subprocess.run([PY, "-m", "mmadapt.prebuild"], env=env, capture_output=True, text=True,
                              timeout=120)
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert f"held by pid {os.getpid()}" in last and LOCK_NAME in last and "fix:" in last


def test_prebuilt_ops_load_without_a_rebuild_whichever_ninja_comes_first(ext_dir):
    logs = {op: (ext_dir / op / ".ninja_log").read_bytes() for op in ("fused_adam", "deepspeed_shm_comm")}
    system_first = os.pathsep.join(["/usr/bin", "/bin", os.environ.get("PATH", "")])
    for path in (system_first, os.environ.get("PATH", "")):
        proc = prebuild(ext_dir, path=path)
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-2000:]
        for op, before in logs.items():
            assert (ext_dir / op / ".ninja_log").read_bytes() == before, f"{op} was rebuilt (PATH={path})"


PROC = "processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu avx2\ncpu MHz\t\t: 2445.406\nbogomips\t: 4890.81\n"


def test_the_cpu_identity_ignores_the_clock_and_sees_the_flags():
    from mmadapt.ops import cpu_identity

    assert cpu_identity(PROC) == cpu_identity(PROC.replace("2445.406", "3100.000").replace("4890.81", "4890.90"))
    assert cpu_identity(PROC) != cpu_identity(PROC.replace("avx2", "avx2 avx512f"))


def test_py_cpuinfo_is_asked_once_per_cpu_and_put_back_after_the_loads(tmp_path):
    """py-cpuinfo's real answer, counted: asked for a new CPU, read back for the same one, asked again for
    another CPU or after a damaged file; and after the loads py-cpuinfo answers for itself again."""
    import cpuinfo

    from mmadapt.ops import CPU_INFO_NAME, cached_cpu_info, cpu_info_answered

    asked = []

    def ask():
        asked.append(1)
        return cpuinfo.get_cpu_info()

    first = cached_cpu_info(str(tmp_path), ask, PROC)
    assert len(asked) == 1 and "flags" in first and "arch" in first
    assert cached_cpu_info(str(tmp_path), ask, PROC.replace("2445.406", "1500.0")) == first and len(asked) == 1
    cached_cpu_info(str(tmp_path), ask, PROC.replace("avx2", "sse4_2"))  # another CPU
    assert len(asked) == 2
    (tmp_path / CPU_INFO_NAME).write_text("{not json")
    assert cached_cpu_info(str(tmp_path), ask, PROC.replace("avx2", "sse4_2")) == first and len(asked) == 3

    real = cpuinfo.get_cpu_info
    with cpu_info_answered(str(tmp_path)):
        answered = cpuinfo.get_cpu_info()
        assert cpuinfo.get_cpu_info is not real and answered["flags"] == first["flags"]
        answered["flags"].append("edited")  # a caller's copy: the next answer is whole
        assert "edited" not in cpuinfo.get_cpu_info()["flags"]
    assert cpuinfo.get_cpu_info is real
