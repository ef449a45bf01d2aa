"""DeepSpeed wiring: process group, threads, model construction under ZeRO-3, checkpoints, export.

Checkpoints are written under a temporary tag, renamed when every rank has finished, and only then
does ``latest`` move: a crash mid-save leaves the previous checkpoint as the one a resume finds.
"""

from __future__ import annotations

import datetime
import faulthandler
import logging
import os
import resource
import shutil
import sys
import warnings
from typing import Callable, NoReturn, Optional

import torch
import torch.distributed as dist

from .artifacts import RunDir
from .ds_config import zero_stage  # noqa: F401 - the stages read it as engine.zero_stage
from .launch import free_port

LATEST = "latest"


def local_world_size() -> int:
    for key in ("LOCAL_WORLD_SIZE", "LOCAL_SIZE", "OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS"):
        if os.environ.get(key):
            return int(os.environ[key])
    return 1


def configure_threads() -> int:
    """One share of the cores per local rank: the deepspeed launcher leaves OMP_NUM_THREADS unset and
    every rank would take every core (2.5x slower on 2 cores, ../shared/PLATFORM.md)."""
    n = int(os.environ.get("OMP_NUM_THREADS") or max(1, (os.cpu_count() or 1) // local_world_size()))
    torch.set_num_threads(n)
    return n


M_MMAP_THRESHOLD = -3  # glibc's mallopt() parameter number
DEFAULT_MMAP_THRESHOLD = 128 * 1024  # glibc's own starting value: the one to hold
MAX_MMAP_THRESHOLD = 32 * 1024 * 1024  # glibc's ceiling on 64-bit systems


def mmap_threshold(raw: str) -> Optional[int]:
    """A MMADAPT_MALLOC_MMAP_THRESHOLD value as bytes (None: empty or "off"); anything else is one line."""
    raw = raw.strip().lower()
    if raw in ("", "off"):
        return None
    try:
        threshold = int(raw)
    except ValueError:
        threshold = None
    if threshold is None or not 0 < threshold <= MAX_MMAP_THRESHOLD:
        from .errors import ConfigError
        raise ConfigError(f"MMADAPT_MALLOC_MMAP_THRESHOLD={raw!r} is not a number of bytes from 1 to "
                          f"{MAX_MMAP_THRESHOLD} (glibc's maximum); fix: e.g. {DEFAULT_MMAP_THRESHOLD}, or off")
    return threshold


def configure_malloc() -> Optional[int]:
    """Hold glibc's mmap threshold fixed at MMADAPT_MALLOC_MMAP_THRESHOLD bytes (unset or "off": glibc's own
    rule). benchmarks/scale.py sets 131072 (glibc's starting value) for its cases.

    Why: ZeRO-3 gathers and frees tensors of many MB every step. glibc raises its threshold to the size of
    each mapped block freed, so after the first gather later blocks of that size come from the heap, and a
    heap hole under a live allocation stays resident after free. Measured (benchmarks/RESULTS.md, "Host
    memory under ZeRO-3"): xlmr-large step 2 through the full model 8.8 -> 6.8 GiB a rank, through the
    mini-model 6.7 -> 6.3, fp32 MiniJoint fits 24 GiB (9.4 GiB a rank); each step 8% slower there, but a
    6 x 256 fine-tuning ran 1.5 s a step against 0.9 s, because every block of the threshold or more is
    mapped, and its pages faulted in, again. So it is a choice for runs that must fit, not a default.
    Returns the threshold set, or None (glibc's rule kept, or not glibc)."""
    threshold = mmap_threshold(os.environ.get("MMADAPT_MALLOC_MMAP_THRESHOLD", ""))
    if threshold is None:
        return None
    if not sys.platform.startswith("linux"):
        return None
    import ctypes
    try:
        mallopt = ctypes.CDLL(None).mallopt  # glibc's; musl and other C libraries do not export it
    except AttributeError:
        return None
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return threshold if mallopt(M_MMAP_THRESHOLD, threshold) == 1 else None


def init_distributed(timeout_minutes: Optional[float] = None) -> tuple[int, int]:
    """Join the process group (gloo on CPU, NCCL on GPU); a plain ``python`` run is one rank.

    The collective timeout (default 30 minutes, MMADAPT_DIST_TIMEOUT_MIN) bounds how long ranks wait
    for a dead peer without a launcher to stop them, and outlasts rank 0's tokenization behind barriers.
    """
    import deepspeed
    from deepspeed.accelerator import get_accelerator

    if "RANK" not in os.environ and "OMPI_COMM_WORLD_RANK" not in os.environ \
            and "PMI_RANK" not in os.environ:
        os.environ.update(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1",
                          MASTER_PORT=str(free_port()))
    configure_threads()
    # A rank killed by a signal (an abort in C++ included) prints every thread's Python stack first.
    faulthandler.enable()
    # DeepSpeed 0.19 calls deprecated collectives every ZeRO step: a warning per step is noise.
    warnings.filterwarnings("ignore", message=r"`torch.distributed.\w+` is deprecated", category=FutureWarning)
    # DeepSpeed's INFO lines (its whole config, every rank) drown rank 0's progress bar; MMADAPT_DS_LOG
    # brings them back.
    from deepspeed.utils import logger as ds_logger
    ds_logger.setLevel(os.environ.get("MMADAPT_DS_LOG", "WARNING").upper())
    if timeout_minutes is None:
        raw = os.environ.get("MMADAPT_DIST_TIMEOUT_MIN", "30")
        try:
            timeout_minutes = float(raw)
        except ValueError:
            from .errors import ConfigError
            raise ConfigError(f"MMADAPT_DIST_TIMEOUT_MIN={raw!r} is not a number of minutes; fix: e.g. 30") from None
    if not dist.is_initialized():
        from .ops import load_ops

        load_ops()  # before DeepSpeed loads any op itself: one lock, stale build locks cleared
        deepspeed.init_distributed(dist_backend=get_accelerator().communication_backend_name(),
                                   auto_mpi_discovery=True, timeout=datetime.timedelta(minutes=timeout_minutes))
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if get_accelerator().device_name() == "cuda":
        torch.cuda.set_device(local_rank)
    return dist.get_rank(), dist.get_world_size()


def device() -> torch.device:
    from deepspeed.accelerator import get_accelerator

    return torch.device(get_accelerator().current_device_name())


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def close_distributed() -> None:
    """Every rank leaves the group, on success and on failure (no 'terminate called ...')."""
    if dist.is_initialized():
        try:
            dist.destroy_process_group()
        except Exception:  # noqa: BLE001 - already torn down by a failing peer
            pass
    remove_shm_buffers()


def exit_process(status: int) -> NoReturn:
    """End a launcher process once its work is written and the group is closed, skipping interpreter
    teardown.

    Teardown destroys torch / gloo C++ objects in no fixed order; a finished rank occasionally aborted
    there ("terminate called without an active exception", exit -6 after the run was complete and
    saved, seen once in CI), and the launcher turns one such rank into a failed stage.
    """
    mpi = sys.modules.get("mpi4py.MPI")
    if mpi is not None and mpi.Is_initialized() and not mpi.Is_finalized():
        mpi.Finalize()  # its atexit hook is skipped below, and mpirun fails a rank that never finalized
    sys.stdout.flush()
    sys.stderr.flush()
    logging.shutdown()
    os._exit(status)


def remove_shm_buffers() -> None:
    """Delete this rank's DeepSpeed shared-memory all-reduce buffer.

    DeepSpeed's CPU shm comm op creates /dev/shm/deepspeed_allreduce_buffer_*_<addr>_<port>_<rank>
    (66 MB each) and never removes it: /dev/shm is RAM, so every run would leak that much.
    """
    import glob

    addr, port, rank = (os.environ.get(k) for k in ("MASTER_ADDR", "MASTER_PORT", "RANK"))
    if addr and port and rank:
        for path in glob.glob(f"/dev/shm/deepspeed_allreduce_buffer_*_{addr}_{port}_{rank}"):
            try:
                os.remove(path)
            except OSError:
                pass


def build_under_zero(factory: Callable[[], torch.nn.Module], ds_config: dict) -> torch.nn.Module:
    """Construct the model so that with ZeRO-3 no rank ever holds all of it."""
    import deepspeed

    if zero_stage(ds_config) == 3:
        with deepspeed.zero.Init(config_dict_or_path=ds_config):
            return factory()
    return factory()


def initialize(model: torch.nn.Module, ds_config: dict):
    """The DeepSpeed engine over the parameters that train; frozen flags must already be set."""
    import deepspeed

    trainable = [p for p in model.parameters() if p.requires_grad]
    engine, _, _, _ = deepspeed.initialize(model=model, model_parameters=trainable, config=ds_config)
    return engine


def inference_module(model: torch.nn.Module, ds_config: dict) -> torch.nn.Module:
    """A frozen model ready for forward passes: under ZeRO-3 it stays partitioned inside a DeepSpeed
    engine without optimizer (each forward gathers a layer at a time, on every rank together); otherwise
    it moves to this rank's device."""
    if zero_stage(ds_config) != 3:
        return model.to(device())
    import deepspeed

    config = {k: v for k, v in ds_config.items() if k not in ("optimizer", "scheduler")}
    engine, _, _, _ = deepspeed.initialize(model=model, config=config)
    module = engine.module
    # the engine owns the gathering hooks: keep it alive with the module (not as a submodule: a cycle)
    object.__setattr__(module, "_mmadapt_engine", engine)
    return module


def initialize_or_resume(model: torch.nn.Module, ds_config: dict, output_dir: str,
                         resume: bool) -> tuple[object, int, dict]:
    """The engine, the step to start from (the latest complete checkpoint's with ``resume``) and the
    checkpoint's client state (what the stage saved beside the step, such as step 2's best score)."""
    root = RunDir(output_dir).checkpoints
    tag = None
    if resume:
        ds_config, tag = prepare_resume(ds_config, root)
    engine = initialize(model, ds_config)
    if not resume:
        return engine, 0, {}
    tag, state = load_checkpoint(engine, root, tag)
    if dist.get_rank() == 0:
        print(f"resumed from {tag} at step {state['step']}", flush=True)
    return engine, int(state["step"]), state


def local_parameter_count(model: torch.nn.Module) -> tuple[int, int]:
    """(elements this rank holds, elements of the whole model), tied weights once."""
    seen, local, full = set(), 0, 0
    for p in model.parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        if hasattr(p, "ds_tensor"):
            local += p.ds_tensor.numel()
            full += p.ds_numel
        else:
            local += p.numel()
            full += p.numel()
    return local, full


def save_checkpoint(engine, root: str, step: int, client_state: dict) -> str:
    tag = f"step{step}"
    partial = f"{tag}.partial"
    if dist.get_rank() == 0:
        shutil.rmtree(os.path.join(root, partial), ignore_errors=True)
    barrier()
    engine.save_checkpoint(root, tag=partial, client_state=client_state, save_latest=False)
    barrier()
    if dist.get_rank() == 0:
        final = os.path.join(root, tag)
        shutil.rmtree(final, ignore_errors=True)
        os.replace(os.path.join(root, partial), final)
        with open(os.path.join(root, LATEST + ".tmp"), "w") as fh:
            fh.write(tag)
        os.replace(os.path.join(root, LATEST + ".tmp"), os.path.join(root, LATEST))
    barrier()
    return tag


def latest_tag(root: str) -> Optional[str]:
    path = os.path.join(root, LATEST)
    if not os.path.isfile(path):
        return None
    with open(path) as fh:
        tag = fh.read().strip()
    return tag if os.path.isdir(os.path.join(root, tag)) else None


def checkpoint_world_size(root: str, tag: str) -> int:
    """Ranks that wrote a checkpoint: one ZeRO model-states file each (stage 0: one file in all)."""
    import glob

    return max(1, len(glob.glob(os.path.join(root, tag, "zero_pp_rank_*_mp_rank_00_model_states.pt"))))


def prepare_resume(ds_config: dict, root: str) -> tuple[dict, str]:
    """The DeepSpeed config and checkpoint tag to resume from, on this world size.

    A checkpoint written by another number of ranks is converted once (rank 0) to DeepSpeed's universal
    format, which any world size loads; the global batch, and with it the data order and masking, do
    not depend on the world size, so the run continues as it would have.
    """
    import subprocess
    import sys

    tag = latest_tag(root)
    saved = checkpoint_world_size(root, tag)
    if saved == dist.get_world_size() or zero_stage(ds_config) == 0:
        return ds_config, tag
    universal = f"{tag}_universal"
    if dist.get_rank() == 0 and not os.path.isdir(os.path.join(root, universal)):
        print(f"converting {tag} (written by {saved} ranks) to a universal checkpoint for "
              f"{dist.get_world_size()} ranks", flush=True)
        tmp = os.path.join(root, universal + ".partial")
        shutil.rmtree(tmp, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "deepspeed.checkpoint.ds_to_universal", "--input_folder",
                        os.path.join(root, tag), "--output_folder", tmp], check=True, capture_output=True)
        os.replace(tmp, os.path.join(root, universal))
    barrier()
    return {**ds_config, "checkpoint": {**ds_config.get("checkpoint", {}), "load_universal": True}}, universal


def load_checkpoint(engine, root: str, tag: Optional[str] = None) -> tuple[str, dict]:
    tag = tag or latest_tag(root)
    _, client_state = engine.load_checkpoint(root, tag=tag)
    return tag, client_state or {}


def consolidated_state_dict(root: str, tag: str) -> dict:
    """Full fp32 weights from a checkpoint, on one process (ZeRO shards merged from the fp32 masters)."""
    import glob

    from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

    if not glob.glob(os.path.join(root, tag, "*zero_pp_rank_*")):  # ZeRO stage 0: one plain file
        states = torch.load(os.path.join(root, tag, "mp_rank_00_model_states.pt"), map_location="cpu",
                            weights_only=False)
        return {k: v.float() for k, v in states["module"].items()}
    return get_fp32_state_dict_from_zero_checkpoint(root, tag=tag)


def optimizer_name(engine) -> str:
    """The optimizer that steps the weights (inside ZeRO's wrapper): DeepSpeed's FusedAdam (the GPU kernel,
    or the CPU accelerator's own), DeepSpeedCPUAdam with the optimizer offloaded."""
    opt = engine.optimizer
    return type(getattr(opt, "optimizer", opt)).__name__


def _proc_status_bytes(field: str) -> Optional[int]:
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def peak_memory_bytes() -> int:
    """This process's peak: device memory on a GPU, else the resident set's high-water mark.

    On Linux the high-water mark is read from /proc (VmHWM, this process image's own): getrusage's
    ru_maxrss survives exec, so a rank started from a large parent (a test, a notebook) would report the
    parent's size."""
    if torch.cuda.is_available():
        return int(torch.cuda.max_memory_allocated())
    peak = _proc_status_bytes("VmHWM")
    return peak if peak is not None else int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def resident_memory_bytes() -> int:
    """This process's memory now: device memory on a GPU, else the resident set (VmRSS)."""
    if torch.cuda.is_available():
        return int(torch.cuda.memory_allocated())
    return _proc_status_bytes("VmRSS") or 0


def reset_peak_memory() -> bool:
    """Start the high-water mark again from now (CUDA's peak statistics; on Linux, VmHWM through
    /proc/self/clear_refs): a training peak without the loading before it. False where it cannot."""
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
        return True
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def peak_memory_per_rank() -> list:
    """Every rank's peak_memory_bytes, on every rank (a collective)."""
    return per_rank(peak_memory_bytes())


def per_rank(value: float) -> list:
    """Every rank's ``value`` (an integer count), on every rank (a collective)."""
    mine = torch.tensor([value], dtype=torch.float64, device=device())
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return [int(mine.item())]
    every = [torch.zeros_like(mine) for _ in range(dist.get_world_size())]
    dist.all_gather(every, mine)
    return [int(v.item()) for v in every]


def gathered_state_dict(module: torch.nn.Module) -> dict:
    """Full CPU copies of every parameter (tied ones once), one ZeRO-3 gather at a time; all ranks call."""
    out, seen = {}, set()
    for name, p in module.named_parameters():
        if id(p) not in seen:
            seen.add(id(p))
            out[name] = full_copies([p])[0]
    return out


def full_copies(params: list) -> list:
    """Whole fp32 CPU copies of parameters, gathered together when ZeRO-3 partitions them (a collective
    then: every rank calls)."""
    import deepspeed

    with deepspeed.zero.GatheredParameters(params, enabled=any(hasattr(p, "ds_id") for p in params)):
        return [p.detach().float().cpu().clone() for p in params]


def reset_trained_parameter(engine, param: torch.nn.Parameter, value: torch.Tensor) -> None:
    """Set a trained parameter to ``value`` everywhere it lives and zero its Adam moments, on every rank
    (a collective under ZeRO-3). Active forgetting re-draws the token embeddings this way.

    Where the value lives depends on the ZeRO stage: under ZeRO-3 in the optimizer's fp32 partition and
    the rank's parameter shard; under ZeRO-1/2 in the fp32 master fragment and the parameter; without
    ZeRO the parameter is its own master and Adam's state hangs off it."""
    import deepspeed
    from deepspeed.utils import safe_set_full_fp32_param, safe_set_full_optimizer_state

    value = value.to(device=device(), dtype=torch.float32)
    zeros = torch.zeros_like(value)
    if hasattr(param, "ds_id") or hasattr(param, "_hp_mapping"):
        safe_set_full_fp32_param(param, value)
        for key in ("exp_avg", "exp_avg_sq"):
            safe_set_full_optimizer_state(param, zeros, key)
        with deepspeed.zero.GatheredParameters([param], modifier_rank=0, enabled=hasattr(param, "ds_id")):
            with torch.no_grad():
                param.copy_(value.to(param.dtype))
        return
    with torch.no_grad():
        param.copy_(value.to(param.dtype))
    state = engine.optimizer.state.get(param, {})
    for key in ("exp_avg", "exp_avg_sq"):
        if key in state:
            state[key].zero_()
