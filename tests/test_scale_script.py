"""The scale benchmark through the GPU check's CPU form, on small presets: every case is a stage run on 2 CPU
ranks through the launcher, and a case over the memory guard is not started. (One test, not one for the
benchmark and one for the script: each case is a launch, and launches are the suite's time.)"""

import json
import os
import subprocess
import sys

import pytest

from conftest import REPO

pytestmark = pytest.mark.slow


def test_gpu_check_cpu_form_runs_the_scale_cases_through_the_stages_and_the_guard_stops_what_would_not_fit(tmp_path):
    """Without a GPU, the prepared GPU check runs the same commands on 2 CPU ranks at small sizes: the scale
    benchmark's four cases (one launch each, one peak probe), a fifth the memory guard refuses, and the demo."""
    proc = subprocess.run(["bash", os.path.join(REPO, "benchmarks", "gpu_check.sh"), str(tmp_path)],
                          env={**os.environ, "GPU_CHECK_CPU": "1", "PYTHON": sys.executable},
                          capture_output=True, text=True, timeout=1500, cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    rows = {r["case"]: r for r in json.load(open(tmp_path / "gpu_check.json"))["rows"]}
    assert [r["status"] for r in rows.values()] == ["ran"] * 4 + ["not started"], rows
    mini, full = (rows[f"step2-xlmr-large-{p}"]["measured"] for p in ("mini", "full"))
    assert mini["flops_per_step"] < full["flops_per_step"]
    for r in (rows["minijoint-xlmr-large"], rows["step2-xlmr-large-mini"]):
        m = r["measured"]
        assert m["world_size"] == 2 and len(m["peak_rss_gib_per_rank"]) == 2
        assert m["malloc_mmap_threshold"] == 131072  # the ranks held glibc's threshold (--malloc_mmap_threshold)
        assert 0 < m["mfu"] < 1 and m["tokens_per_s"] > 0 and m["seconds_per_step"] > 0
        assert set(m["phase_seconds_per_step"]) == {"batch", "forward", "backward", "step"}
        # step 2 ran under the profiler (and is left out of the timing: steps 1 and 2 are not in the median)
        groups = m["profile"]["self_seconds_by_group"]
        assert groups["matmul"] > 0 and groups["optimizer"] > 0 and m["profile"]["step"] == "2"
    # --peak_once: one probe job, after the first case, read by every case (two probes never agree to the last bit)
    assert len({r["measured"]["matmul_peak_flops_per_s"] for c, r in rows.items() if "measured" in r}) == 1
    # step 2 ran through the stage, with its own freeze rule: the tiny preset's 64-wide rows of XLM-R's 250002
    # entries and the head bias over them train, nothing else
    assert mini["trainable_parameters"] == 250002 * 64 + 250002
    assert rows["minijoint-xlmr-large"]["measured"]["trainable_parameters"] == \
        rows["minijoint-xlmr-large"]["measured"]["parameters"]
    # at 256 wide (small) XLM-R's vocabulary alone puts the XL case over the 1 GiB guard
    xl = rows["step2-xlmr-xl-mini"]
    assert xl["predicted"]["total_gib"] * 2 > 1.0 and "guard's budget 1.0 GiB" in xl["reason"]
    assert "not started" in (tmp_path / "gpu_check.md").read_text()
    demo = json.load(open(tmp_path / "gpu_check_demo.json"))
    assert len(demo["curves"]["full"]) == 11 and "zero_shot_accuracy" in demo["curves"]["mini"][-1]
