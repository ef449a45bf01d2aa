"""XLM-R scale on this machine: real ZeRO-3 steps of XLM-R-large and XLM-R-XL on CPU ranks.

    .venv/bin/python benchmarks/scale.py --output benchmarks/results

Cases, each a separate `deepspeed --num_gpus NPROC` job running this file as a worker:
  minijoint-xlmr-large  MiniJoint pretraining (mini head after layer 4), activation checkpointing on
  step2-xlmr-xl-mini    step 2 through the 4-layer mini-model of XLM-R-XL (only embeddings train)
  step2-xlmr-xl-full    step 2 through all 36 layers of XLM-R-XL
For each: the ZeRO-3 prediction of model-state memory per rank, measured peak memory per rank (max RSS),
seconds per step, and whether it fits this machine's memory. A case whose prediction exceeds
--memory_budget_gib for all ranks together is not started (it would be killed, or take the machine
down with it) and is reported as not fitting. Weights are random: memory and time do not depend on them.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import resource
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

GIB = 1024 ** 3
BUCKETS = {"reduce_bucket_size": 20_000_000, "stage3_prefetch_bucket_size": 20_000_000,
           "stage3_max_live_parameters": 100_000_000, "stage3_max_reuse_distance": 100_000_000,
           "stage3_param_persistence_threshold": 10_000}
CASES = {
    "minijoint-xlmr-large": dict(model="large", stage="minijoint"),
    "step2-xlmr-xl-mini": dict(model="xl", stage="step2", through="mini"),
    "step2-xlmr-xl-full": dict(model="xl", stage="step2", through="full"),
}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--output", default=os.path.join(REPO, "benchmarks", "results"))
    p.add_argument("--nproc", type=int, default=2)
    p.add_argument("--steps", type=int, default=3, help="timed steps (after one warm-up step)")
    p.add_argument("--seq_len", type=int, default=512)
    p.add_argument("--batch", type=int, default=1, help="sequences per rank per step")
    p.add_argument("--mini_layers", type=int, default=4)
    p.add_argument("--memory_budget_gib", type=float, default=18.0,
                   help="don't start a case predicted to need more than this over all ranks")
    p.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    p.add_argument("--large", default="xlmr-large", help="preset of the MiniJoint case (a smaller one checks the script)")
    p.add_argument("--xl", default="xlmr-xl", help="preset of the step-2 cases")
    p.add_argument("--worker", choices=list(CASES), help=argparse.SUPPRESS)
    p.add_argument("--local_rank", type=int, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def case_config(name: str, args):
    from mmadapt.config import ModelConfig, resolve_model

    case = CASES[name]
    return resolve_model(ModelConfig(model=getattr(args, case["model"]), mini_layers=args.mini_layers,
                                     vocab_size=250002,
                                     activation_checkpointing=True, hidden_dropout=0.0, attention_dropout=0.0))


def predicted_gib_per_rank(name: str, args) -> dict:
    """ZeRO-3 model states per rank in fp32: weights 4 B/param, and for trainable parameters a
    gradient (4 B), the optimizer's fp32 partition (4 B, kept even in fp32 runs) and Adam's two moments
    (8 B), all partitioned over the ranks; plus the largest tensor gathered whole for its forward.
    Activations and the runtime itself come on top."""
    from mmadapt.flops import model_parameters, parameter_counts

    cfg = case_config(name, args)
    case = CASES[name]
    counts = parameter_counts(cfg)
    if case["stage"] == "minijoint":
        params = model_parameters(cfg)
        trainable = params
    else:
        depth = cfg.mini_layers if case["through"] == "mini" else cfg.num_layers
        params = model_parameters(cfg, depth=depth, heads=1)
        trainable = counts["token_embeddings"]
    states = (4 * params + 16 * trainable) / args.nproc
    # the largest tensor gathered whole, and the reduce and prefetch buckets (fp32)
    gathered = 4 * (max(counts["layer"], counts["token_embeddings"]) + BUCKETS["reduce_bucket_size"]
                    + BUCKETS["stage3_prefetch_bucket_size"])
    return {"parameters": params, "trainable": trainable, "model_states_gib": states / GIB,
            "gathered_gib": gathered / GIB, "total_gib": (states + gathered) / GIB}


def worker(args) -> None:
    import dataclasses

    import torch
    import torch.distributed as dist

    from mmadapt import engine as eng
    from mmadapt.config import TrainConfig
    from mmadapt.ds_config import resolve_ds_config
    from mmadapt.model import IGNORE_INDEX, MiniJointForMaskedLM, MiniModel

    name = args.worker
    case = CASES[name]
    cfg = case_config(name, args)
    rank, world = eng.init_distributed()
    train = TrainConfig(global_batch_size=args.batch * world, micro_batch_size=args.batch,
                        max_steps=args.steps + 1, warmup_steps=1)
    ds, _ = resolve_ds_config(os.path.join(REPO, "ds_configs", "zero3_cpu.json"), train, world)
    # DeepSpeed's default buckets (5e8 elements: 2 GB each in fp32) would dwarf a CPU rank's share.
    ds["zero_optimization"].update(BUCKETS)
    t0 = time.perf_counter()
    if case["stage"] == "minijoint":
        model = eng.build_under_zero(lambda: MiniJointForMaskedLM(cfg), ds)
    else:
        depth = cfg.mini_layers if case["through"] == "mini" else cfg.num_layers
        step_cfg = dataclasses.replace(cfg, mini_head=False)
        model = eng.build_under_zero(lambda: MiniModel(step_cfg, depth=depth), ds)
        for pname, p in model.named_parameters():
            p.requires_grad = pname == "roberta.embeddings.word_embeddings.weight"
    engine = eng.initialize(model, ds)
    build_s = time.perf_counter() - t0
    g = torch.Generator().manual_seed(rank)
    times = []
    for step in range(args.steps + 1):
        ids = torch.randint(4, cfg.vocab_size - 1, (args.batch, args.seq_len), generator=g)
        labels = torch.full_like(ids, IGNORE_INDEX)
        pick = torch.rand(ids.shape, generator=g) < 0.15
        labels[pick] = ids[pick]
        t = time.perf_counter()
        out = engine(ids, labels)
        engine.backward(out.loss)
        engine.step()
        if step:
            times.append(time.perf_counter() - t)
    peak = torch.tensor([resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GIB], dtype=torch.float64)
    peaks = [torch.zeros_like(peak) for _ in range(world)]
    dist.all_gather(peaks, peak)
    if rank == 0:
        with open(os.path.join(args.output, f"scale-{name}.json"), "w") as fh:
            json.dump({"case": name, "world_size": world, "seconds_per_step": sum(times) / len(times),
                       "step_times": times, "build_seconds": build_s,
                       "peak_rss_gib_per_rank": [p.item() for p in peaks],
                       "local_parameters_rank0": eng.local_parameter_count(engine.module)[0]}, fh)
    eng.close_distributed()


def run_case(name: str, args) -> dict:
    pred = predicted_gib_per_rank(name, args)
    row = {"case": name, "predicted": pred}
    need = pred["total_gib"] * args.nproc
    if need > args.memory_budget_gib:
        row.update(status="not started", fits=False,
                   reason=f"predicted {need:.1f} GiB of model states over {args.nproc} ranks > budget "
                          f"{args.memory_budget_gib} GiB (24 GiB machine, activations and runtime on top)")
        return row
    cmd = [os.path.join(os.path.dirname(sys.executable), "deepspeed"), "--num_gpus", str(args.nproc),
           os.path.abspath(__file__), "--worker", name, "--output", args.output, "--steps", str(args.steps),
           "--seq_len", str(args.seq_len), "--batch", str(args.batch), "--mini_layers", str(args.mini_layers),
           "--large", args.large, "--xl", args.xl]
    print(f"== {name}: predicted {pred['total_gib']:.2f} GiB per rank", flush=True)
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    if proc.returncode != 0:
        row.update(status=f"failed (exit {proc.returncode})", fits=False, reason=proc.stderr[-500:])
        return row
    with open(os.path.join(args.output, f"scale-{name}.json")) as fh:
        measured = json.load(fh)
    os.remove(os.path.join(args.output, f"scale-{name}.json"))
    total = sum(measured["peak_rss_gib_per_rank"])
    row.update(status="ran", measured=measured, fits=total < 24.0)
    return row


def markdown(rows: list, args) -> str:
    lines = [f"# Scale on this machine: {args.large} MiniJoint, {args.xl} step 2 ({args.nproc} CPU ranks, ZeRO-3, fp32, activation checkpointing, "
             f"batch {args.batch} x {args.seq_len} per rank)", "",
             "| case | params | trainable | predicted model states / rank (GiB) | measured peak RSS / rank (GiB) "
             "| s / step | fits 24 GiB |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        p = r["predicted"]
        m = r.get("measured")
        peak = ", ".join(f"{x:.2f}" for x in m["peak_rss_gib_per_rank"]) if m else r["status"]
        sec = f"{m['seconds_per_step']:.1f}" if m else "-"
        lines.append(f"| {r['case']} | {p['parameters'] / 1e6:.0f}M | {p['trainable'] / 1e6:.0f}M | "
                     f"{p['total_gib']:.2f} | {peak} | {sec} | {'yes' if r['fits'] else 'no'} |")
    notes = [r for r in rows if r.get("reason")]
    if notes:
        lines += [""] + [f"- {r['case']}: {r['reason']}" for r in notes]
    lines += ["", "Predicted = fp32 weights + (gradient + fp32 optimizer partition + Adam moments) of trainable parameters, partitioned "
              "over the ranks, plus the largest tensor gathered whole and the reduce/prefetch buckets "
              f"(set to {BUCKETS['reduce_bucket_size']:.0e} elements here; DeepSpeed's default 5e8 costs 2 GB each "
              "in fp32, and with it the first run of xlmr-large filled this machine's memory). Measured = max RSS of each rank "
              "process (the runtime, activations and allocator caches included)."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    args = parse_args(argv)
    os.makedirs(args.output, exist_ok=True)
    if args.worker:
        worker(args)
        return 0
    rows = [run_case(name, args) for name in args.cases]
    text = markdown(rows, args)
    with open(os.path.join(args.output, "scale.md"), "w") as fh:
        fh.write(text)
    with open(os.path.join(args.output, "scale.json"), "w") as fh:
        json.dump({"date": datetime.date.today().isoformat(), "rows": rows}, fh, indent=2)
    print(text)
    return 0


if __name__ == "__main__":
    from mmadapt.engine import exit_process  # the workers are launcher ranks: see exit_process

    exit_process(main())
