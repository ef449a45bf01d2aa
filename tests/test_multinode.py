"""Two simulated hosts: network namespaces joined by a veth pair, each node started with `--no_ssh`.

The namespaces and their private addresses exist only inside this test, which creates and removes
them; where namespaces cannot be made (no root), the test says so and is skipped.
"""

import json
import os
import shutil
import subprocess
import sys
import uuid

import pytest

from conftest import REPO
from test_launcher_zero3 import DEEPSPEED, LAUNCHER, _free_port, metrics

pytestmark = pytest.mark.slow

SUBNET = "10.231.{}.{}"


def _ip(*args):
    return subprocess.run(["ip", *args], capture_output=True, text=True)


@pytest.fixture
def two_hosts():
    tag = uuid.uuid4().hex[:6]
    hosts = [f"mm{tag}a", f"mm{tag}b"]
    if shutil.which("ip") is None or _ip("netns", "add", hosts[0]).returncode != 0:
        pytest.skip("cannot create network namespaces here (needs root and iproute2)")
    octet = int(tag[:2], 16)
    try:
        _ip("netns", "add", hosts[1])
        veths = [f"v{tag}a", f"v{tag}b"]
        assert _ip("link", "add", veths[0], "type", "veth", "peer", "name", veths[1]).returncode == 0
        addrs = []
        for i, (ns, veth) in enumerate(zip(hosts, veths)):
            addr = SUBNET.format(octet, i + 1)
            addrs.append(addr)
            _ip("link", "set", veth, "netns", ns)
            for cmd in (["addr", "add", f"{addr}/24", "dev", veth], ["link", "set", veth, "up"],
                        ["link", "set", "lo", "up"]):
                assert _ip("netns", "exec", ns, "ip", *cmd).returncode == 0, cmd
        yield list(zip(hosts, veths, addrs))
    finally:
        for ns in hosts:
            _ip("netns", "del", ns)


def test_two_hosts_with_no_ssh_train_like_one_host(tmp_path, two_hosts, text_and_tokenizer):
    text, tok_dir, _ = text_and_tokenizer
    common = ["--deepspeed_config", "ds_configs/zero3_cpu.json", "--model", "tiny", "--mini_layers", "2",
              "--train_files", text, "--tokenizer", tok_dir, "--max_seq_length", "32", "--global_batch_size", "8",
              "--max_steps", "6", "--log_every", "1", "--cache_dir", str(tmp_path / "cache"), "--no_export_hf"]
    hostfile = tmp_path / "hostfile"
    hostfile.write_text("".join(f"{ns} slots=1\n" for ns, _, _ in two_hosts))
    master, port = two_hosts[0][2], str(_free_port())
    out = tmp_path / "two-hosts"
    nodes = []
    for rank, (ns, veth, _) in enumerate(two_hosts):
        env = {**os.environ, "GLOO_SOCKET_IFNAME": veth}
        cmd = ["ip", "netns", "exec", ns, DEEPSPEED, "--hostfile", str(hostfile), "--no_ssh", "--node_rank",
               str(rank), "--master_addr", master, "--master_port", port, LAUNCHER, *common,
               "--output_dir", str(out)]
        nodes.append(subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                      text=True))
    logs = [n.communicate(timeout=600)[0] for n in nodes]
    assert [n.returncode for n in nodes] == [0, 0], logs[0][-2000:] + logs[1][-2000:]

    single = tmp_path / "one-host"
    proc = subprocess.run([DEEPSPEED, "--num_gpus", "2", "--master_port", str(_free_port()), LAUNCHER, *common,
                           "--output_dir", str(single)], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    two, one = metrics(out), metrics(single)
    assert [r["step"] for r in two] == list(range(1, 7))
    for a, b in zip(two, one):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5) and a["mini_loss"] == pytest.approx(
            b["mini_loss"], rel=1e-5), a["step"]


@pytest.mark.skipif(shutil.which("mpirun") is None, reason="no mpirun: install OpenMPI (apt-get install openmpi-bin)")
def test_mpirun_two_ranks_match_the_deepspeed_launcher(tmp_path, text_and_tokenizer):
    text, tok_dir, _ = text_and_tokenizer
    common = [LAUNCHER, "--deepspeed_config", "ds_configs/zero3_cpu.json", "--model", "tiny", "--mini_layers", "2",
              "--train_files", text, "--tokenizer", tok_dir, "--max_seq_length", "32", "--global_batch_size", "8",
              "--max_steps", "4", "--log_every", "1", "--cache_dir", str(tmp_path / "cache"), "--no_export_hf"]
    mpi = subprocess.run(["mpirun", "--allow-run-as-root", "--oversubscribe", "-np", "2", "-x", "PATH",
                          sys.executable, *common, "--output_dir", str(tmp_path / "mpi")],
                         cwd=REPO, capture_output=True, text=True, timeout=600)
    assert mpi.returncode == 0, mpi.stdout[-2000:] + mpi.stderr[-2000:]
    ds = subprocess.run([DEEPSPEED, "--num_gpus", "2", "--master_port", str(_free_port()), *common,
                         "--output_dir", str(tmp_path / "ds")], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert ds.returncode == 0, ds.stderr[-2000:]
    summary = json.load(open(tmp_path / "mpi" / "summary.json"))
    assert summary["world_size"] == 2 and len(summary["parameters_per_rank"]) == 2
    for a, b in zip(metrics(tmp_path / "mpi"), metrics(tmp_path / "ds")):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5), a["step"]
