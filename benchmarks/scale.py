"""XLM-R scale on one machine, through the stages themselves: time, memory against the prediction, MFU.

    .venv/bin/python benchmarks/scale.py --output benchmarks/results          # the CPU cases, 2 ranks
    .venv/bin/python benchmarks/scale.py --dtype bf16 --name scale-large \
        --cases minijoint-xlmr-large step2-xlmr-large-full step2-xlmr-large-mini

Every case is one real stage run of --nproc ranks through the deepspeed launcher (launchers/minijoint.py or
launchers/adapt.py: the stages' own model build, freeze rule, engine and Trainer), on inputs made here: a
tokenizer of XLM-R's 250002 entries (a whole-word vocabulary over made-up words), and text of those words.
A step-2 case reads its source model from the MiniJoint case of the same size when that ran (or a one-step
MiniJoint run made for it, or --source). Random weights and made-up text: memory and time do not depend on
them. From each run: seconds per step (median over the steps after the first), where they go (forward,
backward, DeepSpeed's step: this rank's phase timer), FLOPs per step (the stage's own count), MFU against the
matmul peak of the same ranks measured right after the run by the same launcher, and each rank's peak
resident memory at the end of training against the ZeRO-3 prediction. A case whose prediction, all ranks
together, exceeds --memory_budget_gib is not started (it would be killed, or take the machine down with
it); a running job whose processes pass --kill_at_gib is stopped. Run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

GIB = 1024 ** 3
CASES = {
    "minijoint-xlmr-base": dict(preset="xlmr-base", stage="minijoint"),
    "minijoint-xlmr-large": dict(preset="xlmr-large", stage="minijoint"),
    "minijoint-xlmr-xl": dict(preset="xlmr-xl", stage="minijoint"),
    "step2-xlmr-large-mini": dict(preset="xlmr-large", stage="step2", through="mini"),
    "step2-xlmr-large-full": dict(preset="xlmr-large", stage="step2", through="full"),
    "step2-xlmr-xl-mini": dict(preset="xlmr-xl", stage="step2", through="mini"),
    "step2-xlmr-xl-full": dict(preset="xlmr-xl", stage="step2", through="full"),
}
CPU_CASES = ["minijoint-xlmr-large", "step2-xlmr-xl-mini", "step2-xlmr-xl-full"]
WORK_MARKER = ".mmadapt-scale"


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
    p.add_argument("--profile", action="store_true",
                   help="run each case's second step under the torch profiler (--profile_step; left out of the "
                   "timing): time by kind of work in the report")
    p.add_argument("--keep_runs", action="store_true", help="keep each case's stage directory (checkpoints)")
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
    p.add_argument("--work", help="inputs and stage runs (default: NAME under mmadapt's cache; the inputs are "
                   "kept and reused)")
    p.add_argument("--source", help="step-2 cases: the primary model (a Hugging Face directory with a MiniJoint "
                   "head) instead of the MiniJoint case's own export")
    p.add_argument("--tied_gradient", choices=("shared", "autograd"), default="shared",
                   help="the tied token matrix's gradient: one shared buffer (mmadapt/tied.py) or autograd's "
                   "sum of its uses (the figures before it)")
    p.add_argument("--malloc_mmap_threshold", default="131072",
                   help="MMADAPT_MALLOC_MMAP_THRESHOLD of every case's ranks: glibc's mmap threshold held at this "
                   "many bytes (ZeRO-3's freed gathers go back to the system: up to 2 GiB a rank less, about 8%% "
                   "slower a step at xlmr-large), or off for glibc's own rule")
    p.add_argument("--peak_once", action="store_true",
                   help="measure the ranks' matmul peak once, after the first case, and read every case's MFU "
                   "against it (a launcher job fewer per case; the default measures it after each case, under "
                   "that case's load)")
    p.add_argument("--matmul_probe", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--local_rank", type=int, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def case_config(name: str, args):
    from mmadapt.config import ModelConfig, resolve_model

    preset = dict(x.split("=") for x in args.preset).get(CASES[name]["preset"], CASES[name]["preset"])
    over = {} if preset.startswith("xlmr") else {"vocab_size": 250002, "max_position_embeddings": 514}
    return resolve_model(ModelConfig(model=preset, mini_layers=args.mini_layers, activation_checkpointing=True,
                                     hidden_dropout=0.0, attention_dropout=0.0, **over))


def ds_config_file(args, work: str) -> str:
    """The --deepspeed_config with its bf16 section set by --dtype, written beside the runs."""
    from mmadapt.ds_config import load_ds_json

    ds = load_ds_json(args.deepspeed_config)
    ds["bf16"] = {**ds.get("bf16", {}), "enabled": args.dtype == "bf16"}
    path = os.path.join(work, f"ds-{args.dtype}.json")
    with open(path, "w") as fh:
        json.dump(ds, fh, indent=1)
    return path


def zero_section(args) -> dict:
    from mmadapt.ds_config import load_ds_json

    return load_ds_json(args.deepspeed_config).get("zero_optimization", {})


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
    zero = zero_section(args)
    buckets = zero.get("reduce_bucket_size", 5e8) + zero.get("stage3_prefetch_bucket_size", 5e7)
    gathered = width * max(counts["layer"], counts["token_embeddings"]) + 4 * buckets
    # The embedding's gradient comes out dense and whole (V x h) on every rank before ZeRO partitions it:
    # once with the tied matrix's shared buffer (mmadapt/tied.py); with autograd's own sum over the tied
    # uses, twice (the running sum and the next use's contribution at once).
    dense_grad = (1 if args.tied_gradient == "shared" else 2) * width * counts["token_embeddings"]
    return {"parameters": params, "trainable": trainable, "model_states_gib": states / GIB,
            "gathered_gib": gathered / GIB, "dense_embedding_grad_gib": dense_grad / GIB,
            "total_gib": (states + gathered + dense_grad) / GIB}


def matmul_peak(device, dtype, size: int = 2048, repeats: int = 8) -> float:
    """FLOP/s of this rank's best square matmul: the peak MFU is read against."""
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


def probe(args) -> None:
    """A launcher job of the same ranks as the stage runs: every rank's matmul peak at once (they share the
    machine, so their peaks add up), written by rank 0."""
    import torch
    import torch.distributed as dist

    from mmadapt import engine as eng

    rank, world = eng.init_distributed()
    device = eng.device()
    mine = torch.tensor([matmul_peak(device, torch.bfloat16 if args.dtype == "bf16" else torch.float32)],
                        dtype=torch.float64, device=device)
    dist.all_reduce(mine)
    if rank == 0:
        with open(os.path.join(args.output, f"{args.name}-matmul.json"), "w") as fh:
            json.dump({"world_size": world, "device": str(device), "matmul_peak_flops_per_s": mine.item()}, fh)
    eng.close_distributed()


def make_inputs(work: str, vocab_size: int, tokens: int) -> tuple:
    """(tokenizer dir, text file): a whole-word tokenizer of exactly ``vocab_size`` entries (mmadapt's own
    tokenizer builder) and text of its words, at least ``tokens`` of them. Made once per work directory."""
    import random

    from mmadapt.artifacts import has_tokenizer
    from mmadapt.tokenizer import SPECIAL_LAYOUT, load_tokenizer, train_tokenizer

    tok_dir, text = os.path.join(work, f"tokenizer-{vocab_size}"), os.path.join(work, f"text-{vocab_size}.txt")
    alphabet = "abcdefghij"
    # whole_word_vocab: specials, the words, "▁", the characters, <mask>; every word once, in counts that
    # decrease, so exactly the first `words` are kept whole
    words = vocab_size - len(SPECIAL_LAYOUT) - 1 - 1 - len(alphabet)
    if not os.path.isfile(text):
        rng = random.Random(0)
        names = ["".join(alphabet[int(d)] for d in str(i)) for i in range(words)]
        with open(text + ".tmp", "w") as fh:
            for start in range(0, words, 100):
                fh.write(" ".join(names[start:start + 100]) + "\n")
            for _ in range(max(1, tokens // 100) + 1):
                fh.write(" ".join(rng.choice(names[:1000]) for _ in range(100)) + "\n")
        os.replace(text + ".tmp", text)
    if not has_tokenizer(tok_dir):
        train_tokenizer([text], vocab_size, tok_dir, whole_words=True)
    if len(load_tokenizer(tok_dir)) != vocab_size:
        raise RuntimeError(f"{tok_dir}: {len(load_tokenizer(tok_dir))} entries, wanted {vocab_size}")
    return tok_dir, text


def stage_values(name: str, args, inputs: tuple, ds_path: str, source: str = None, export: bool = False) -> tuple:
    """(stage, settings by the stage's own field names) of one case: a step-2 case reads ``source``; a
    MiniJoint case writes its Hugging Face export only when a step-2 case will read it (``export``)."""
    cfg, case = case_config(name, args), CASES[name]
    tok_dir, text = inputs
    common = {"train_files": [text], "tokenizer": tok_dir, "max_seq_length": args.seq_len,
              "global_batch_size": args.batch * args.nproc, "micro_batch_size": args.batch,
              "max_steps": args.steps + 1, "warmup_steps": 1, "log_every": 1, "save_every": 0,
              "deepspeed_config": ds_path, "activation_checkpointing": True,
              "profile_step": 2 if args.profile and args.steps >= 2 else 0,
              "cache_dir": os.path.join(os.path.dirname(ds_path), "cache")}
    if case["stage"] == "minijoint":
        arch = {f: getattr(cfg, f) for f in ("num_layers", "hidden_size", "num_heads", "intermediate_size",
                                             "vocab_size", "max_position_embeddings")}
        return "minijoint", {**common, "model": cfg.model, **arch, "mini_layers": cfg.mini_layers,
                             "hidden_dropout": 0.0, "attention_dropout": 0.0, "export_hf": export}
    return "adapt", {**common, "model": source, "through": case["through"]}


def run_case(name: str, args, work: str, inputs: tuple, ds_path: str, sources: dict) -> dict:
    from mmadapt.artifacts import RunDir
    from mmadapt.orchestrate import StageCall

    pred = predicted_gib_per_rank(name, args)
    cfg, case = case_config(name, args), CASES[name]
    row = {"case": name, "predicted": pred, "preset": cfg.model}
    need = pred["total_gib"] * args.nproc
    if need > args.memory_budget_gib:
        row.update(status="not started", fits=False,
                   reason=f"predicted {need:.1f} GiB (model states, gathered tensors, dense embedding gradient) over "
                          f"{args.nproc} ranks > the guard's budget "
                          f"{args.memory_budget_gib} GiB (a 24 GiB machine; activations and the runtime come on top)")
        return row
    source = None
    if case["stage"] == "step2":
        source = args.source or sources.get(case["preset"]) or make_source(case["preset"], args, work, inputs,
                                                                           ds_path, sources)
        if isinstance(source, dict):  # the source run did not finish: its row says why
            row.update(status="not started", fits=False, reason=f"no source model: {source.get('reason')}")
            return row
    out = os.path.join(work, name)
    shutil.rmtree(out, ignore_errors=True)
    stage, values = stage_values(name, args, inputs, ds_path, source, export=keeps_source(name, args))
    call = StageCall(name, stage, {**values, "output_dir": out})
    print(f"== {name}: predicted {pred['total_gib']:.2f} GiB per rank", flush=True)
    row.update(measure(call, args, work))
    if row.get("measured"):
        m = row["measured"]
        row["peak_over_prediction"] = max(m["peak_rss_gib_per_rank"]) / pred["total_gib"]
        # the same without what each rank held before the model existed (Python, torch, DeepSpeed, the
        # 250k-entry tokenizer, the data): the model's own memory against the model-state prediction
        row["model_peak_over_prediction"] = max(p - b for p, b in zip(m["peak_rss_gib_per_rank"],
                                                                    m["before_model_rss_gib_per_rank"])) / pred["total_gib"]
    if row.get("status") == "ran" and keeps_source(name, args):
        sources[case["preset"]] = RunDir(out).hf
        if not args.keep_runs:  # its export is what the step-2 cases read; its checkpoint (9 GB at large) is not
            shutil.rmtree(RunDir(out).checkpoints, ignore_errors=True)
    elif not args.keep_runs:
        shutil.rmtree(out, ignore_errors=True)
    return row


def keeps_source(name: str, args) -> bool:
    """A MiniJoint case whose export a later step-2 case of the same size reads."""
    preset = CASES[name]["preset"]
    return CASES[name]["stage"] == "minijoint" and not args.source and any(
        CASES[c]["stage"] == "step2" and CASES[c]["preset"] == preset for c in args.cases)


def make_source(preset: str, args, work: str, inputs: tuple, ds_path: str, sources: dict):
    """A one-step MiniJoint run of ``preset`` for the step-2 cases to read: its hf/ (or its failed row)."""
    import argparse as _argparse

    from mmadapt.artifacts import RunDir
    from mmadapt.orchestrate import StageCall

    name = next(c for c, v in CASES.items() if v == dict(preset=preset, stage="minijoint"))
    one = _argparse.Namespace(**{**vars(args), "steps": 0})
    pred = predicted_gib_per_rank(name, one)
    if pred["total_gib"] * args.nproc > args.memory_budget_gib:
        return {"reason": f"its MiniJoint run is predicted at {pred['total_gib'] * args.nproc:.1f} GiB over the "
                          f"ranks, > the guard's {args.memory_budget_gib} GiB; pass --source"}
    out = os.path.join(work, f"source-{preset}")
    if not RunDir(out).complete():
        shutil.rmtree(out, ignore_errors=True)
        stage, values = stage_values(name, one, inputs, ds_path, export=True)
        print(f"== source model for {preset}: one MiniJoint step", flush=True)
        got = measure(StageCall(f"source-{preset}", stage, {**values, "output_dir": out}), one, work)
        if got["status"] != "ran":
            return got
        if not args.keep_runs:
            shutil.rmtree(RunDir(out).checkpoints, ignore_errors=True)
    sources[preset] = RunDir(out).hf
    return sources[preset]


def measure(call, args, work: str) -> dict:
    """Run one stage call under the memory watchdog; its figures from its own summary and metrics."""
    from mmadapt.artifacts import RunDir, read_json
    from mmadapt.launch import launcher_command

    env = {"MMADAPT_TIED_GRADIENT": args.tied_gradient, "MMADAPT_MALLOC_MMAP_THRESHOLD": args.malloc_mmap_threshold}
    returncode, stopped_at, log = watched(launcher_command(call.stage, call.argv, args.nproc), args.kill_at_gib, env)
    run = RunDir(call.config("train").output_dir)
    with open(os.path.join(work, f"{call.name}.log"), "w") as fh:
        fh.write(log)
    if stopped_at is not None:
        return {"status": f"stopped by the watchdog at {stopped_at:.1f} GiB", "fits": False,
                "reason": f"the job's processes together passed {args.kill_at_gib} GiB resident"}
    if returncode != 0 or not run.complete():
        return {"status": f"failed (exit {returncode})", "fits": False, "reason": log[-800:]}
    summary, records = run.read_summary(), run.read_metrics()
    profiled = call.config("train").profile_step
    # the first step allocates (warm-up); a profiled step runs slower
    timed = [r for r in records if r["step"] > 1 and r["step"] != profiled] or records
    tokens_per_step = summary["tokens"] / summary["steps"]
    seconds = median([tokens_per_step / r["tokens_per_s"] for r in timed])
    phases = {k: median([r["phase_seconds"][k] for r in timed]) for k in timed[0]["phase_seconds"]}
    peak = matmul_peak_of_ranks(args, work)
    flops = summary["flops_per_step"]["total"]
    train_peak = [b / GIB for b in summary["training_peak_memory_bytes_per_rank"]]
    measured = {"world_size": summary["world_size"], "dtype": args.dtype, "seconds_per_step": seconds,
                "step_times": [tokens_per_step / r["tokens_per_s"] for r in records],
                "phase_seconds_per_step": phases, "tokens_per_s": tokens_per_step / seconds,
                "flops_per_step": flops, "achieved_flops_per_s": flops / seconds,
                "matmul_peak_flops_per_s": peak, "mfu": flops / seconds / peak,
                "peak_rss_gib_per_rank": train_peak,
                "stage_peak_rss_gib_per_rank": [b / GIB for b in summary["peak_memory_bytes_per_rank"]],
                "setup_peak_rss_gib_per_rank": [b / GIB for b in summary["setup_peak_memory_bytes_per_rank"]],
                "before_model_rss_gib_per_rank": [b / GIB for b in summary["resident_before_model_bytes_per_rank"]],
                "training_peak_is_apart": summary["training_peak_is_apart"],
                "malloc_mmap_threshold": summary["malloc_mmap_threshold"],
                "parameters": summary["parameters"], "trainable_parameters": summary["trainable_parameters"],
                "load_average": os.getloadavg()}
    if profiled:
        measured["profile"] = read_json(run.profile)
    return {"status": "ran", "measured": measured, "fits": sum(train_peak) < 24.0}


def median(values: list) -> float:
    import statistics

    return statistics.median(values)


_PEAKS: dict = {}  # (ranks, dtype) -> FLOP/s, for --peak_once


def matmul_peak_of_ranks(args, work: str) -> float:
    from mmadapt.launch import free_port

    if args.peak_once and (args.nproc, args.dtype) in _PEAKS:
        return _PEAKS[args.nproc, args.dtype]
    cmd = [sys.executable, "-m", "deepspeed.launcher.runner", "--num_gpus", str(args.nproc), "--master_port",
           str(free_port()), os.path.abspath(__file__), "--matmul_probe", "--output", work, "--name", args.name,
           "--dtype", args.dtype]
    subprocess.run(cmd, check=True, capture_output=True, cwd=REPO)
    path = os.path.join(work, f"{args.name}-matmul.json")
    with open(path) as fh:
        _PEAKS[args.nproc, args.dtype] = json.load(fh)["matmul_peak_flops_per_s"]
    return _PEAKS[args.nproc, args.dtype]


def watched(cmd: list, kill_at_gib: float, env: dict = None) -> tuple:
    """Run ``cmd`` in its own process group, stopping it (SIGKILL to the group) when its processes
    together pass ``kill_at_gib`` resident: the kernel's OOM killer would otherwise pick any process on
    the machine. Returns (exit status, GiB at the stop or None, stdout and stderr)."""
    import signal
    import tempfile

    import psutil

    with tempfile.TemporaryFile("w+") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=REPO, start_new_session=True,
                                env={**os.environ, **(env or {})})
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
             f"batch {args.batch} x {args.seq_len} per rank, tied gradient: {args.tied_gradient}", "",
             "Through the stages (launchers/minijoint.py, launchers/adapt.py), one run per case.", "",
             "| case | params | trainable | predicted / rank (GiB) | training peak / rank (GiB) | before the model "
             "| peak / predicted | (peak - before) / predicted | setup peak | s / step | tokens/s | MFU "
             "| load avg (1, 5 min) | fits 24 GiB |", "|---" * 14 + "|"]
    for r in rows:
        p, m = r["predicted"], r.get("measured")
        if m:
            cells = [", ".join(f"{x:.2f}" for x in m["peak_rss_gib_per_rank"]),
                     ", ".join(f"{x:.2f}" for x in m["before_model_rss_gib_per_rank"]),
                     f"{r['peak_over_prediction']:.2f}x", f"{r['model_peak_over_prediction']:.2f}x",
                     ", ".join(f"{x:.2f}" for x in m["setup_peak_rss_gib_per_rank"]), f"{m['seconds_per_step']:.2f}", f"{m['tokens_per_s']:.0f}", f"{100 * m['mfu']:.1f}%",
                     f"{m['load_average'][0]:.2f}, {m['load_average'][1]:.2f}"]
        else:
            cells = [r["status"]] + ["-"] * 8
        lines.append(f"| {r['case']} ({r['preset']}) | {p['parameters'] / 1e6:.0f}M | {p['trainable'] / 1e6:.0f}M | "
                     f"{p['total_gib']:.2f} | " + " | ".join(cells) + f" | {'yes' if r['fits'] else 'no'} |")
    ran = [r for r in rows if r.get("measured")]
    if ran:
        lines += ["", "Where a step's time goes (rank 0, median seconds per step after the first; `step` is DeepSpeed's "
                  "step: the optimizer over the trainable partitions):", "",
                  "| case | forward | backward | step | FLOPs per step |", "|---|---|---|---|---|"]
        for r in ran:
            ph = r["measured"]["phase_seconds_per_step"]
            lines.append(f"| {r['case']} | {ph['forward']:.2f} | {ph['backward']:.2f} | {ph['step']:.2f} | "
                         f"{r['measured']['flops_per_step']:.3g} |")
    profiled = [r for r in ran if "profile" in r["measured"]]
    if profiled:
        groups = list(dict.fromkeys(g for r in profiled for g in r["measured"]["profile"]["self_seconds_by_group"]))
        lines += ["", "One profiled step, rank 0, self seconds by kind of work (torch profiler; mmadapt/profiling.py):",
                  "", "| case | " + " | ".join(groups) + " | total |", "|---" * (len(groups) + 2) + "|"]
        for r in profiled:
            pr = r["measured"]["profile"]
            lines.append(f"| {r['case']} | " + " | ".join(f"{pr['self_seconds_by_group'].get(g, 0.0):.2f}" for g in groups)
                         + f" | {pr['total_self_seconds']:.2f} |")
    for pair in step2_pairs(rows):
        lines += ["", f"Step 2 at {pair['preset']}: full / mini wall-clock {pair['wall_clock_ratio']:.2f}x against the "
                  f"FLOPs ratio {pair['flops_ratio']:.2f}x ({pair['of_flops_ratio']:.2f} of it); without DeepSpeed's step "
                  f"(the optimizer over the same embedding matrix on both paths: {pair['step_s'][0]:.2f} s full, "
                  f"{pair['step_s'][1]:.2f} s mini) {pair['wall_clock_ratio_without_step']:.2f}x."]
    notes = [r for r in rows if r.get("reason")]
    if notes:
        lines += [""] + [f"- {r['case']}: {r['reason']}" for r in notes]
    lines += ["", "Predicted = weights + (gradient + fp32 optimizer partition + Adam moments) of trainable parameters, "
              "partitioned over the ranks, plus the largest tensor gathered whole, the reduce and prefetch buckets "
              "of the DeepSpeed config, and the embedding's dense gradient before ZeRO partitions it (once with the "
              "shared buffer of mmadapt/tied.py, twice with autograd's sum). Measured = each rank's resident "
              "high-water mark in training (VmHWM; the runtime, activations and allocator caches included), "
              "or device memory on a GPU; training's own (the high-water mark starts again after loading) where the OS "
              "allows, the setup peak (loading and engine) apart. MFU = the stage's FLOPs per step / median step time / the matmul peak of "
              "the same ranks, all ranks together"
              + (", measured once after the first case (--peak_once)." if args.peak_once else ", measured after each case.")]
    return "\n".join(lines) + "\n"


def step2_pairs(rows: list) -> list:
    """Full against mini at each size where both ran: the wall-clock ratio beside the FLOPs ratio."""
    out = []
    by = {(CASES[r["case"]]["preset"], CASES[r["case"]].get("through")): r["measured"] for r in rows if r.get("measured")}
    for preset in dict.fromkeys(CASES[r["case"]]["preset"] for r in rows):
        full, mini = by.get((preset, "full")), by.get((preset, "mini"))
        if full and mini:
            wall, flops = full["seconds_per_step"] / mini["seconds_per_step"], full["flops_per_step"] / mini["flops_per_step"]
            fs, ms = full["phase_seconds_per_step"]["step"], mini["phase_seconds_per_step"]["step"]
            out.append({"preset": preset, "wall_clock_ratio": wall, "flops_ratio": flops, "of_flops_ratio": wall / flops,
                        "step_s": [fs, ms],
                        "wall_clock_ratio_without_step": (full["seconds_per_step"] - fs) / (mini["seconds_per_step"] - ms)})
    return out


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.matmul_probe:
        probe(args)
        return 0
    from mmadapt.data import default_cache_dir
    from mmadapt.errors import ConfigError
    from mmadapt.outdir import claim_run_dir

    work = os.path.abspath(args.work or os.path.join(default_cache_dir(), "scale", args.name))
    vocab = {case_config(c, args).vocab_size for c in args.cases}
    try:
        if len(vocab) != 1:
            raise ConfigError(f"--cases {' '.join(args.cases)} have vocabularies {sorted(vocab)}; fix: run them apart")
        if args.source and not os.path.isdir(args.source):
            raise ConfigError(f"--source {args.source}: no such directory; fix: pass a Hugging Face MLM directory "
                              "with a MiniJoint head (a pretraining run's hf/), or leave it out")
        from mmadapt.engine import mmap_threshold
        try:
            mmap_threshold(args.malloc_mmap_threshold)
        except ConfigError as exc:  # named by the flag that set it, before any case starts
            raise ConfigError(f"--malloc_mmap_threshold: {exc}") from None
        # the case directories in it are replaced run by run: a directory this script did not make is refused
        claim_run_dir(work, WORK_MARKER, "--work")
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    os.makedirs(args.output, exist_ok=True)
    inputs = make_inputs(work, vocab.pop(), 2 * (args.steps + 1) * args.batch * args.nproc * args.seq_len)
    ds_path, sources = ds_config_file(args, work), {}
    rows = [run_case(name, args, work, inputs, ds_path, sources) for name in args.cases]
    text = markdown(rows, args)
    with open(os.path.join(args.output, f"{args.name}.md"), "w") as fh:
        fh.write(text)
    with open(os.path.join(args.output, f"{args.name}.json"), "w") as fh:
        json.dump({"date": datetime.date.today().isoformat(), "args": vars(args), "rows": rows,
                   "step2_pairs": step2_pairs(rows)}, fh, indent=2)
    print(text)
    return 0


if __name__ == "__main__":
    from mmadapt.engine import exit_process  # the workers are launcher ranks: see exit_process

    exit_process(main())
