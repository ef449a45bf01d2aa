"""The scale benchmark (and the GPU check that reuses it) on small presets: every case runs on 2 CPU
ranks through the launcher, memory is read per phase, and a case over the memory guard is not started."""

import json
import os
import subprocess
import sys

import pytest

from conftest import REPO

pytestmark = pytest.mark.slow


def test_scale_cases_run_small_and_the_guard_stops_what_would_not_fit(tmp_path):
    cmd = [sys.executable, os.path.join(REPO, "benchmarks", "scale.py"), "--output", str(tmp_path), "--name", "s",
           "--cases", "minijoint-xlmr-large", "step2-xlmr-xl-mini", "step2-xlmr-xl-full", "--preset",
           "xlmr-large=tiny", "--preset", "xlmr-xl=small", "--mini_layers", "1", "--seq_len", "32", "--steps", "1",
           "--memory_budget_gib", "1.0"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    rows = {r["case"]: r for r in json.load(open(tmp_path / "s.json"))["rows"]}
    ran = [r for r in rows.values() if r["status"] == "ran"]
    assert ran, rows
    for r in ran:
        m = r["measured"]
        assert m["world_size"] == 2 and len(m["peak_rss_gib_per_rank"]) == 2
        assert set(m["phases_gib_per_rank"]) == {"start", "build", "engine", "forward", "backward", "step"}
        assert 0 < m["mfu"] < 1 and m["tokens_per_s"] > 0
    # the presets keep XLM-R's 250k vocabulary: at 256 wide (small) the step-2 cases are over a 1 GiB guard
    guarded = [r for r in rows.values() if r["status"] == "not started"]
    assert guarded and all(r["predicted"]["total_gib"] * 2 > 1.0 for r in guarded)
    assert "not started" in (tmp_path / "s.md").read_text()


def test_gpu_check_script_runs_its_cpu_form(tmp_path):
    """Without a GPU, the prepared GPU check runs the same commands on 2 CPU ranks at small sizes."""
    proc = subprocess.run(["bash", os.path.join(REPO, "benchmarks", "gpu_check.sh"), str(tmp_path)],
                          env={**os.environ, "GPU_CHECK_CPU": "1", "PYTHON": sys.executable},
                          capture_output=True, text=True, timeout=1500, cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    rows = json.load(open(tmp_path / "gpu_check.json"))["rows"]
    assert [r["status"] for r in rows] == ["ran"] * 4
    mini, full = (next(r for r in rows if r["case"] == f"step2-xlmr-large-{p}")["measured"] for p in ("mini", "full"))
    assert mini["flops_per_step"] < full["flops_per_step"]
    demo = json.load(open(tmp_path / "gpu_check_demo.json"))
    assert len(demo["curves"]["full"]) == 11 and "zero_shot_accuracy" in demo["curves"]["mini"][-1]
