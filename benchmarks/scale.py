"""XLM-R scale on one machine: real ZeRO-3 steps, memory per phase against the prediction, FLOP/s.

    .venv/bin/python benchmarks/scale.py --output benchmarks/results          # the CPU cases, 2 ranks
    .venv/bin/python benchmarks/scale.py --cases minijoint-xlmr-large --dtype bf16   # bf16 on this CPU

Cases, each a separate job of --nproc ranks through the deepspeed launcher, running this file as a worker:
  minijoint-xlmr-large  MiniJoint pretraining (mini head after layer 4), activation checkpointing on
  step2-xlmr-xl-mini    step 2 through the 4-layer mini-model of XLM-R-XL (only embeddings train)
  step2-xlmr-xl-full    step 2 through all 36 layers of XLM-R-XL
  minijoint-xlmr-base, step2-xlmr-large-mini / -full: the GPU check's cases (benchmarks/gpu_check.sh)
For each: the ZeRO-3 prediction of model-state memory per rank; the measured resident memory of each
rank after each phase of the first step (build under zero.Init, engine, forward, backward, optimizer
step) and its peak; seconds per step, tokens/s and FLOP/s (the analytic count of mmadapt.flops), and
MFU against the matmul peak measured on the same device in the same job. A case whose prediction, all
ranks together, exceeds --memory_budget_gib is not started (it would be killed, or take the machine
down with it) and is reported with its prediction and that guard. Weights and tokens are random: memory
and time do not depend on them. Run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

GIB = 1024 ** 3
CASES = {
    "minijoint-xlmr-base": dict(preset="xlmr-base", stage="minijoint"),
    "minijoint-xlmr-large": dict(preset="xlmr-large", stage="minijoint"),
    "step2-xlmr-large-mini": dict(preset="xlmr-large", stage="step2", through="mini"),
    "step2-xlmr-large-full": dict(preset="xlmr-large", stage="step2", through="full"),
    "step2-xlmr-xl-mini": dict(preset="xlmr-xl", stage="step2", through="mini"),
    "step2-xlmr-xl-full": dict(preset="xlmr-xl", stage="step2", through="full"),
}
CPU_CASES = ["minijoint-xlmr-large", "step2-xlmr-xl-mini", "step2-xlmr-xl-full"]
PHASES = ("start", "build", "engine", "forward", "backward", "step")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--output", default=os.path.join(REPO, "benchmarks", "results"),
                   help="directory of the report")
    p.add_argument("--name", default="scale", help="file stem of the report (scale.md / scale.json)")
    p.add_argument("--nproc", type=int, default=2, help="ranks (the deepspeed launcher's --num_gpus)")
    p.add_argument("--deepspeed_config", default="ds_configs/zero3_cpu.json",
                   help="DeepSpeed config (a shipped one by name, or a path)")
    p.add_argument("--dtype", choices=("fp32", "bf16"), default="fp32",
                   help="bf16: weights and activations in bf16 (DeepSpeed's bf16 section)")
    p.add_argument("--steps", type=int, default=3, help="timed steps (after one warm-up step)")
    p.add_argument("--seq_len", type=int, default=512, help="tokens per sequence")
    p.add_argument("--batch", type=int, default=1, help="sequences per rank per step")
    p.add_argument("--mini_layers", type=int, default=4, help="k: layers of the mini-model")
    p.add_argument("--memory_budget_gib", type=float, default=20.0,
                   help="don't start a case predicted to need more than this over all ranks")
    p.add_argument("--kill_at_gib", type=float, default=21.0,
                   help="watchdog: stop a job whose processes together pass this resident size")
    p.add_argument("--cases", nargs="+", default=CPU_CASES, choices=list(CASES), help="cases to run, in order")
    p.add_argument("--preset", action="append", default=[], metavar="CASE_PRESET=OTHER",
                   help="run a case at another size preset (e.g. xlmr-xl=small to check the script)")
    p.add_argument("--worker", choices=list(CASES), help=argparse.SUPPRESS)
    p.add_argument("--local_rank", type=int, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def case_config(name: str, args):
    from mmadapt.config import ModelConfig, resolve_model

    preset = dict(x.split("=") for x in args.preset).get(CASES[name]["preset"], CASES[name]["preset"])
    over = {} if preset.startswith("xlmr") else {"vocab_size": 250002, "max_position_embeddings": 514}
    return resolve_model(ModelConfig(model=preset, mini_layers=args.mini_layers, activation_checkpointing=True,
                                     hidden_dropout=0.0, attention_dropout=0.0, **over))


def ds_config(args, world: int, batch: int):
    from mmadapt.config import TrainConfig
    from mmadapt.ds_config import resolve_ds_config

    train = TrainConfig(global_batch_size=batch * world, micro_batch_size=batch, max_steps=args.steps + 1,
                        warmup_steps=1)
    ds, _ = resolve_ds_config(args.deepspeed_config, train, world)
    ds["bf16"] = {"enabled": args.dtype == "bf16"}
    return ds


def predicted_gib_per_rank(name: str, args) -> dict:
    """ZeRO-3 model states per rank: weights (4 B/param fp32, 2 B bf16), and for trainable parameters a
    gradient (weight's size), the optimizer's fp32 partition (4 B, kept even in fp32 runs) and Adam's
    two fp32 moments (8 B), all partitioned over the ranks; plus the largest tensor gathered whole, the
    reduce and prefetch buckets of the DeepSpeed config, and two whole dense copies of the embedding's
    gradient (see below). Activations and the runtime come on top."""
    from mmadapt.flops import model_parameters, parameter_counts

    cfg, case = case_config(name, args), CASES[name]
    counts = parameter_counts(cfg)
    if case["stage"] == "minijoint":
        params = trainable = model_parameters(cfg)
    else:
        depth = cfg.mini_layers if case["through"] == "mini" else cfg.num_layers
        # step 2 trains the token embeddings and the head bias over them (Adapt.trainable)
        params, trainable = model_parameters(cfg, depth=depth, heads=1), counts["token_embeddings"] + cfg.vocab_size
    width = 2 if args.dtype == "bf16" else 4
    states = (width * params + (width + 12) * trainable) / args.nproc
    zero = ds_config(args, args.nproc, args.batch)["zero_optimization"]
    buckets = zero.get("reduce_bucket_size", 5e8) + zero.get("stage3_prefetch_bucket_size", 5e7)
    gathered = width * max(counts["layer"], counts["token_embeddings"]) + 4 * buckets
    # The embedding's gradient comes out of autograd dense and whole (V x h) on every rank before ZeRO
    # partitions it, and with tied output projections autograd holds the running sum and the next use's
    # contribution at once: two whole copies (measured: without this term xlmr-xl's mini path peaked at
    # 1.5x the prediction, with it within 1.1x).
    dense_grad = 2 * width * counts["token_embeddings"]
    return {"parameters": params, "trainable": trainable, "model_states_gib": states / GIB,
            "gathered_gib": gathered / GIB, "dense_embedding_grad_gib": dense_grad / GIB,
            "total_gib": (states + gathered + dense_grad) / GIB}


def _rss_gib() -> tuple:
    """(resident now, high-water mark) of this process in GiB, or device memory on a GPU."""
    import torch

    if torch.cuda.is_available():
        return torch.cuda.memory_allocated() / GIB, torch.cuda.max_memory_allocated() / GIB
    now = peak = 0.0
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                now = int(line.split()[1]) * 1024 / GIB
            elif line.startswith("VmHWM:"):
                peak = int(line.split()[1]) * 1024 / GIB
    return now, peak


def matmul_peak(device, dtype, size: int = 2048, repeats: int = 8) -> float:
    """FLOP/s of this rank's best square matmul: the peak MFU is read against, measured here."""
    import torch

    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    best = 0.0
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        (a @ b).sum().item()
        best = max(best, 2 * size ** 3 / (time.perf_counter() - t))
    return best


def worker(args) -> None:
    import dataclasses

    import torch
    import torch.distributed as dist

    from mmadapt import engine as eng
    from mmadapt.flops import adapt_step_flops, pretrain_step_flops
    from mmadapt.model import IGNORE_INDEX, MiniJointForMaskedLM, MiniModel

    name, case = args.worker, CASES[args.worker]
    cfg = case_config(name, args)
    phases = {"start": _rss_gib()}
    rank, world = eng.init_distributed()

    def mark(phase: str) -> None:  # also printed, so that a job the watchdog stops still says how far it got
        phases[phase] = _rss_gib()
        print(f"phase {phase} rank {rank}: {phases[phase][0]:.2f} GiB resident, peak {phases[phase][1]:.2f}",
              flush=True)
    device = eng.device()
    ds = ds_config(args, world, args.batch)
    predicted = args.batch * world * args.seq_len * 0.15
    t0 = time.perf_counter()
    if case["stage"] == "minijoint":
        model = eng.build_under_zero(lambda: MiniJointForMaskedLM(cfg), ds)
        flops = pretrain_step_flops(cfg, args.seq_len, args.batch * world, predicted)
    else:
        from mmadapt.config import DataConfig, TrainConfig
        from mmadapt.stages.adapt import Adapt, AdaptConfig

        depth = cfg.mini_layers if case["through"] == "mini" else cfg.num_layers
        step_cfg = dataclasses.replace(cfg, mini_head=False)
        # the model step 2 builds (Adapt.build: MiniModel at the path's depth), frozen by step 2's own rule
        stage = Adapt({"adapt": AdaptConfig(through=case["through"]), "data": DataConfig(), "train": TrainConfig()})
        model = eng.build_under_zero(lambda: MiniModel(step_cfg, depth=depth), ds)
        for pname, p in model.named_parameters():
            p.requires_grad = stage.trainable(pname)
        flops = adapt_step_flops(cfg, args.seq_len, args.batch * world, predicted, case["through"])
    mark("build")
    engine = eng.initialize(model, ds)
    mark("engine")
    build_s = time.perf_counter() - t0
    g = torch.Generator().manual_seed(rank)
    times = []
    for step in range(args.steps + 1):
        ids = torch.randint(4, cfg.vocab_size - 1, (args.batch, args.seq_len), generator=g)
        labels = torch.full_like(ids, IGNORE_INDEX)
        pick = torch.rand(ids.shape, generator=g) < 0.15
        labels[pick] = ids[pick]
        ids, labels = ids.to(device), labels.to(device)
        if device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        out = engine(ids, labels)
        if step == 0:
            mark("forward")
        engine.backward(out.loss)
        if step == 0:
            mark("backward")
        engine.step()
        if step == 0:
            mark("step")
        if device.type == "cuda":
            torch.cuda.synchronize()
        if step:
            times.append(time.perf_counter() - t)
    peak_flops = matmul_peak(device, torch.bfloat16 if args.dtype == "bf16" else torch.float32)
    mine = torch.tensor([[phases[p][0] for p in PHASES] + [_rss_gib()[1], peak_flops]], dtype=torch.float64,
                        device=device)
    every = [torch.zeros_like(mine) for _ in range(world)]
    dist.all_gather(every, mine)
    if rank == 0:
        per_rank = [e.cpu().tolist()[0] for e in every]
        seconds = sorted(times)[len(times) // 2]
        achieved = flops.total / seconds
        peak_all = sum(r[-1] for r in per_rank)  # the ranks share the machine: their peaks add up
        with open(os.path.join(args.output, f"{args.name}-{name}.json"), "w") as fh:
            json.dump({"case": name, "world_size": world, "device": str(device), "dtype": args.dtype,
                       "seconds_per_step": seconds, "step_times": times, "build_seconds": build_s,
                       "tokens_per_s": args.batch * world * args.seq_len / seconds,
                       "flops_per_step": flops.total, "achieved_flops_per_s": achieved,
                       "matmul_peak_flops_per_s": peak_all, "mfu": achieved / peak_all,
                       "phases_gib_per_rank": {p: [r[i] for r in per_rank] for i, p in enumerate(PHASES)},
                       "peak_rss_gib_per_rank": [r[len(PHASES)] for r in per_rank],
                       "local_parameters_rank0": eng.local_parameter_count(engine.module)[0]}, fh)
    eng.close_distributed()


def run_case(name: str, args) -> dict:
    from mmadapt.launch import free_port

    pred = predicted_gib_per_rank(name, args)
    row = {"case": name, "predicted": pred, "preset": case_config(name, args).model}
    need = pred["total_gib"] * args.nproc
    if need > args.memory_budget_gib:
        row.update(status="not started", fits=False,
                   reason=f"predicted {need:.1f} GiB (model states, gathered tensors, dense embedding gradients) over "
                          f"{args.nproc} ranks > the guard's budget "
                          f"{args.memory_budget_gib} GiB (a 24 GiB machine; activations and the runtime come on top)")
        return row
    cmd = [sys.executable, "-m", "deepspeed.launcher.runner", "--num_gpus", str(args.nproc), "--master_port",
           str(free_port()), os.path.abspath(__file__), "--worker", name, "--output", args.output,
           "--name", args.name, "--steps", str(args.steps), "--seq_len", str(args.seq_len), "--batch",
           str(args.batch), "--mini_layers", str(args.mini_layers), "--deepspeed_config", args.deepspeed_config,
           "--dtype", args.dtype, *[x for p in args.preset for x in ("--preset", p)]]
    print(f"== {name}: predicted {pred['total_gib']:.2f} GiB per rank", flush=True)
    returncode, stopped_at, log = watched(cmd, args.kill_at_gib)
    path = os.path.join(args.output, f"{args.name}-{name}.json")
    phases = [line for line in log.splitlines() if line.startswith("phase ")]
    if stopped_at is not None:
        row.update(status=f"stopped by the watchdog at {stopped_at:.1f} GiB", fits=False, phases_seen=phases,
                   reason=f"the job's processes together passed {args.kill_at_gib} GiB resident; phases reached: "
                          + "; ".join(phases[-4:]))
        return row
    if returncode != 0 or not os.path.isfile(path):
        row.update(status=f"failed (exit {returncode})", fits=False, reason=log[-800:])
        return row
    with open(path) as fh:
        measured = json.load(fh)
    os.remove(path)
    row.update(status="ran", measured=measured, fits=sum(measured["peak_rss_gib_per_rank"]) < 24.0,
               peak_over_prediction=max(measured["peak_rss_gib_per_rank"]) / pred["total_gib"])
    return row


def watched(cmd: list, kill_at_gib: float) -> tuple:
    """Run ``cmd`` in its own process group, stopping it (SIGKILL to the group) when its processes
    together pass ``kill_at_gib`` resident: the kernel's OOM killer would otherwise pick any process on
    the machine. Returns (exit status, GiB at the stop or None, stdout and stderr)."""
    import signal
    import tempfile

    import psutil

    with tempfile.TemporaryFile("w+") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=REPO, start_new_session=True)
        stopped_at = None
        while proc.poll() is None:
            try:
                root = psutil.Process(proc.pid)
                rss = sum(p.memory_info().rss for p in [root] + root.children(recursive=True)) / GIB
            except psutil.Error:
                rss = 0.0
            if rss > kill_at_gib:
                stopped_at = rss
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                break
            time.sleep(0.5)
        log.seek(0)
        return proc.returncode, stopped_at, log.read()


def markdown(rows: list, args) -> str:
    lines = [f"# Scale: {args.nproc} ranks, ZeRO-3 ({args.deepspeed_config}), {args.dtype}, activation checkpointing, "
             f"batch {args.batch} x {args.seq_len} per rank", "",
             "| case | params | trainable | predicted / rank (GiB) | measured peak / rank (GiB) | peak / predicted "
             "| s / step | tokens/s | MFU | fits 24 GiB |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        p, m = r["predicted"], r.get("measured")
        if m:
            cells = [", ".join(f"{x:.2f}" for x in m["peak_rss_gib_per_rank"]), f"{r['peak_over_prediction']:.2f}x",
                     f"{m['seconds_per_step']:.1f}", f"{m['tokens_per_s']:.0f}", f"{100 * m['mfu']:.1f}%"]
        else:
            cells = [r["status"], "-", "-", "-", "-"]
        lines.append(f"| {r['case']} ({r['preset']}) | {p['parameters'] / 1e6:.0f}M | {p['trainable'] / 1e6:.0f}M | "
                     f"{p['total_gib']:.2f} | " + " | ".join(cells) + f" | {'yes' if r['fits'] else 'no'} |")
    phased = [r for r in rows if r.get("measured")]
    if phased:
        lines += ["", "Resident memory of rank 0 after each phase of the first step (GiB; Adam's moments are allocated at "
                  "the first optimizer step, so the first backward is below the steady state the peak includes):", "",
                  "| case | " + " | ".join(PHASES) + " | peak |", "|---" * (len(PHASES) + 2) + "|"]
        for r in phased:
            m = r["measured"]
            lines.append(f"| {r['case']} | " + " | ".join(f"{m['phases_gib_per_rank'][p][0]:.2f}" for p in PHASES)
                         + f" | {m['peak_rss_gib_per_rank'][0]:.2f} |")
    notes = [r for r in rows if r.get("reason")]
    if notes:
        lines += [""] + [f"- {r['case']}: {r['reason']}" for r in notes]
    lines += ["", "Predicted = weights + (gradient + fp32 optimizer partition + Adam moments) of trainable parameters, "
              "partitioned over the ranks, plus the largest tensor gathered whole, the reduce and prefetch buckets "
              "of the DeepSpeed config, and two whole dense copies of the embedding's gradient (autograd's running "
              "sum over the tied uses and the next contribution, before ZeRO partitions it). Measured = each rank's resident high-water mark (VmHWM; the runtime, "
              "activations and allocator caches included), or device memory on a GPU. MFU = analytic FLOPs per step "
              "/ median step time / the matmul peak measured in the same job, all ranks together."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    args = parse_args(argv)
    os.makedirs(args.output, exist_ok=True)
    if args.worker:
        worker(args)
        return 0
    rows = [run_case(name, args) for name in args.cases]
    text = markdown(rows, args)
    with open(os.path.join(args.output, f"{args.name}.md"), "w") as fh:
        fh.write(text)
    with open(os.path.join(args.output, f"{args.name}.json"), "w") as fh:
        json.dump({"date": datetime.date.today().isoformat(), "args": vars(args), "rows": rows}, fh, indent=2)
    print(text)
    return 0


if __name__ == "__main__":
    from mmadapt.engine import exit_process  # the workers are launcher ranks: see exit_process

    exit_process(main())
