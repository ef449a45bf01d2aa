"""One step-2 FLOP budget for several paths: how many steps each takes and when each is evaluated, so
that every path is evaluated at the same cumulative FLOPs (the demo and the benchmarks plan alike)."""

from __future__ import annotations

import dataclasses


def step2_plan(primary_dir: str, target_tok_dir: str, train_files: list, cache_dir: str, seq_len: int,
               batch: int, full_steps: int, eval_marks: int, depths: dict, mlm_probability: float = 0.15) -> dict:
    """{path: (steps, steps between evaluations, FLOPs per step)}.

    ``depths`` maps each path to the layers it runs: None for the full model, "mini" for the MiniJoint
    mini-model, an int for a MiniPost mini-model (extracted + new layers). The standard path takes
    ``full_steps`` steps; the others as many of theirs as cost the same FLOPs, each mark to half a step.
    FLOPs per step are the stage's formula (mmadapt/flops.py) on the masked positions the stage will see:
    the same blocks (the same cache) and the attention kernel it will run."""
    from .data import build_blocks, expected_predicted_tokens
    from .flops import adapt_step_flops, fused_attention_runs
    from .hf_io import pretrained_model_config
    from .tokenizer import load_tokenizer

    target_tok = load_tokenizer(target_tok_dir)
    cfg = dataclasses.replace(pretrained_model_config(primary_dir), vocab_size=len(target_tok))
    blocks = build_blocks(target_tok, seq_len, list(train_files), cache_dir=cache_dir)
    predicted = expected_predicted_tokens(blocks, target_tok, mlm_probability) * batch
    fused = fused_attention_runs(cfg)
    per_step = {}
    for path, depth in depths.items():
        through = "full" if depth is None else "mini"
        per_step[path] = adapt_step_flops(cfg, seq_len, batch, predicted, through, fused,
                                          depth=None if depth in (None, "mini") else depth).total
    reference = per_step[next(p for p, d in depths.items() if d is None)]
    every = max(1, full_steps // eval_marks)
    plan = {}
    for path in depths:
        path_every = max(1, round(every * reference / per_step[path]))
        plan[path] = (path_every * eval_marks, path_every, per_step[path])
    return plan
