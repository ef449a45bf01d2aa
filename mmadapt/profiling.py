"""One optimizer step under the torch profiler (``--profile_step N``): where its time goes, by kind of work.

Rank 0 writes ``profile.json`` (seconds per group, and the top operators) and ``profile.txt`` (torch's own
table) into the run directory. Groups are read from operator names, self time only (no double counting):
the matmuls; attention (scaled-dot-product attention and its softmax); LayerNorm and GELU; the embedding
lookup and its gradient; the masked head's loss; ZeRO-3's parameter gathers and gradient reduction (the
collectives and DeepSpeed's partition bookkeeping); the optimizer; everything else.
"""

from __future__ import annotations

import os
from typing import Callable

from .artifacts import PROFILE_FILE, PROFILE_TABLE, write_json, write_text

GROUPS = (
    ("matmul", ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::matmul", "aten::linear",
                "aten::_addmm_activation")),
    ("attention", ("scaled_dot_product", "aten::_softmax", "aten::softmax", "flash_attention", "_efficient_attention")),
    ("layernorm_gelu", ("layer_norm", "aten::gelu")),
    ("embedding", ("aten::embedding", "aten::index_add", "embedding_dense_backward", "aten::index_select")),
    ("head_loss", ("cross_entropy", "log_softmax", "nll_loss")),
    ("zero3_collectives", ("all_gather", "reduce_scatter", "all_reduce", "allgather", "gloo", "nccl", "broadcast",
                           "record_param_comms", "c10d")),
    ("optimizer", ("adam", "Adam", "optimizer", "Optimizer")),
)


def group_of(name: str) -> str:
    for group, keys in GROUPS:
        if any(k in name for k in keys):
            return group
    return "other"


def profiled(step: Callable[[], object], out_dir: str, rank: int, label: str):
    """Run ``step`` under the profiler; rank 0 writes the breakdown. Returns what ``step`` returned."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
    with profile(activities=activities) as prof:
        result = step()
    if rank == 0:
        events = prof.key_averages()
        groups: dict = {}
        for e in events:
            groups[group_of(e.key)] = groups.get(group_of(e.key), 0.0) + e.self_cpu_time_total / 1e6
        top = sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)[:25]
        report = {"step": label, "self_seconds_by_group": dict(sorted(groups.items(), key=lambda kv: -kv[1])),
                  "total_self_seconds": sum(groups.values()),
                  "top": [{"op": e.key, "group": group_of(e.key), "self_seconds": e.self_cpu_time_total / 1e6,
                           "calls": e.count} for e in top]}
        write_json(os.path.join(out_dir, PROFILE_FILE), report)
        write_text(os.path.join(out_dir, PROFILE_TABLE), events.table(sort_by="self_cpu_time_total", row_limit=40))
    return result
