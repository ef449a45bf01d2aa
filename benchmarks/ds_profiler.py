"""DeepSpeed's flops profiler beside mmadapt's accounting, for each stage.

    .venv/bin/python benchmarks/ds_profiler.py --output benchmarks/results

DeepSpeed's profiler counts the forward pass (by patching torch's functional ops) and, for a training
step, assumes backward = 2 x forward whatever is frozen. mmadapt counts forward, input-gradient and
weight-gradient work separately, and measures them with FlopCounterMode (tests/test_flops.py). Where
everything trains the two agree on the forward and roughly on the step; where most weights are frozen
(step 2) DeepSpeed's 3 x forward overstates the step, most of all through the full model.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mmadapt.config import ModelConfig, resolve_model  # noqa: E402
from mmadapt.flops import adapt_step_flops, measure_step_flops, pretrain_step_flops  # noqa: E402
from mmadapt.model import IGNORE_INDEX, MiniJointForMaskedLM, MiniModel, masked_lm_loss  # noqa: E402


def profiled_forward_flops(model: torch.nn.Module, fn) -> float:
    from deepspeed.profiling.flops_profiler import FlopsProfiler

    prof = FlopsProfiler(model)
    prof.start_profile()
    with torch.no_grad():
        fn()
    flops = prof.get_total_flops()
    prof.end_profile()
    return float(flops)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--output", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results"))
    p.add_argument("--hidden_size", type=int, default=256)
    p.add_argument("--num_layers", type=int, default=12)
    p.add_argument("--mini_layers", type=int, default=2)
    p.add_argument("--vocab_size", type=int, default=50000)
    p.add_argument("--seq_len", type=int, default=128)
    p.add_argument("--batch", type=int, default=4)
    args = p.parse_args(argv)

    cfg = resolve_model(ModelConfig(model="small", hidden_size=args.hidden_size, num_layers=args.num_layers,
                                    num_heads=max(1, args.hidden_size // 64), intermediate_size=4 * args.hidden_size,
                                    vocab_size=args.vocab_size, mini_layers=args.mini_layers,
                                    hidden_dropout=0.0, attention_dropout=0.0))
    torch.manual_seed(0)
    ids = torch.randint(4, cfg.vocab_size - 1, (args.batch, args.seq_len))
    labels = torch.full_like(ids, IGNORE_INDEX)
    pick = torch.rand(ids.shape) < 0.15
    labels[pick] = ids[pick]
    predicted = int(pick.sum())

    model = MiniJointForMaskedLM(cfg)
    mini = MiniModel.view(model)

    def full_step2():
        hidden, _ = model.encode(ids)
        return masked_lm_loss(model.lm_head, hidden, labels)

    rows = []
    cases = [
        ("MiniJoint pretraining", lambda: model(ids, labels).loss, set(model.parameters()),
         pretrain_step_flops(cfg, args.seq_len, args.batch, predicted)),
        ("step 2 through full", full_step2, {model.roberta.embeddings.word_embeddings.weight},
         adapt_step_flops(cfg, args.seq_len, args.batch, predicted, "full")),
        ("step 2 through mini", lambda: mini(ids, labels).loss, {model.roberta.embeddings.word_embeddings.weight},
         adapt_step_flops(cfg, args.seq_len, args.batch, predicted, "mini")),
    ]
    for name, fn, trainable, analytic in cases:
        for param in model.parameters():
            param.requires_grad = param in trainable
        ds_forward = profiled_forward_flops(model, fn)
        measured = measure_step_flops(fn)
        rows.append({"stage": name, "deepspeed_forward": ds_forward, "deepspeed_step_3x": 3 * ds_forward,
                     "mmadapt_forward": analytic.forward, "mmadapt_step": analytic.total,
                     "measured_step": measured.total,
                     "deepspeed_overstates_step_by": 3 * ds_forward / analytic.total})

    lines = ["# DeepSpeed's flops profiler vs mmadapt's accounting", "",
             f"Model: {cfg.num_layers} layers x {cfg.hidden_size}, vocabulary {cfg.vocab_size}, mini head after "
             f"layer {cfg.mini_layers}; batch {args.batch} x {args.seq_len}, {predicted} masked positions. "
             "GFLOP per step.", "",
             "| stage | DeepSpeed forward | DeepSpeed step (3x fwd) | mmadapt forward | mmadapt step | "
             "FlopCounterMode step | DeepSpeed / mmadapt step |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['stage']} | {r['deepspeed_forward'] / 1e9:.2f} | {r['deepspeed_step_3x'] / 1e9:.2f} | "
                     f"{r['mmadapt_forward'] / 1e9:.2f} | {r['mmadapt_step'] / 1e9:.2f} | "
                     f"{r['measured_step'] / 1e9:.2f} | {r['deepspeed_overstates_step_by']:.2f}x |")
    lines += ["", "DeepSpeed's profiler assumes backward = 2 x forward whatever is frozen; in step 2 only the "
              "embeddings train, so no layer has a weight gradient, and it overstates the step. It also counts "
              "elementwise ops (LayerNorm, GELU, softmax) that mmadapt and FlopCounterMode leave out."]
    text = "\n".join(lines) + "\n"
    os.makedirs(args.output, exist_ok=True)
    with open(os.path.join(args.output, "ds_profiler.md"), "w") as fh:
        fh.write(text)
    with open(os.path.join(args.output, "ds_profiler.json"), "w") as fh:
        json.dump({"config": dataclasses.asdict(cfg), "rows": rows}, fh, indent=2)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
