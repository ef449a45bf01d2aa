"""Run by tests/test_forgetting.py under the deepspeed launcher: a real engine trains two steps, the token
embeddings are forgotten, and every rank checks what it holds. Writes <out>/rank<R>.json."""

import json
import os
import sys

import torch

from mmadapt import engine as eng
from mmadapt.config import ModelConfig, TrainConfig, resolve_model
from mmadapt.ds_config import resolve_ds_config
from mmadapt.model import MiniJointForMaskedLM, fresh_embedding_rows

EMB = "roberta.embeddings.word_embeddings.weight"


def full_params(engine) -> dict:
    return {k: v for k, v in eng.gathered_state_dict(engine.module).items()}


def moments(engine, names) -> dict:
    """Each named parameter's Adam moments, whole, as this rank sees them."""
    from deepspeed.utils import safe_get_full_optimizer_state

    params = dict(engine.module.named_parameters())
    out = {}
    for name in names:
        p = params[name]
        if hasattr(p, "ds_id"):
            out[name] = [safe_get_full_optimizer_state(p, k).float().cpu().reshape(p.ds_shape) for k in ("exp_avg", "exp_avg_sq")]
        else:
            state = engine.optimizer.state[p]
            out[name] = [state[k].float().cpu().clone() for k in ("exp_avg", "exp_avg_sq")]
    return out


def main(ds_path: str, out: str) -> None:
    rank, world = eng.init_distributed()
    cfg = resolve_model(ModelConfig(model="tiny", vocab_size=50, hidden_size=32, num_layers=2, num_heads=2,
                                    intermediate_size=64, max_position_embeddings=40, mini_layers=1))
    train = TrainConfig(global_batch_size=4, max_steps=10, lr=1e-2, warmup_steps=1)
    ds, _ = resolve_ds_config(ds_path, train, world)
    torch.manual_seed(0)
    model = eng.build_under_zero(lambda: MiniJointForMaskedLM(cfg), ds)
    engine = eng.initialize(model, ds)
    g = torch.Generator().manual_seed(rank)
    for _ in range(2):
        ids = torch.randint(4, 49, (2, 16), generator=g)
        labels = torch.where(torch.rand(ids.shape, generator=g) < 0.3, ids, torch.full_like(ids, -100))
        engine.backward(engine(ids, labels).loss)
        engine.step()
    names = [n for n, _ in engine.module.named_parameters()]
    before_params, before_moments = full_params(engine), moments(engine, names)
    fresh = fresh_embedding_rows(cfg, 1234)
    eng.reset_trained_parameter(engine, engine.module.roberta.embeddings.word_embeddings.weight, fresh)
    after_params, after_moments = full_params(engine), moments(engine, names)
    report = {
        "embeddings_fresh": torch.equal(after_params[EMB], fresh),
        "embeddings_changed": not torch.equal(before_params[EMB], after_params[EMB]),
        "moments_zero": all(float(m.abs().max()) == 0.0 for m in after_moments[EMB]),
        "moments_were_nonzero": all(float(m.abs().max()) > 0.0 for m in before_moments[EMB]),
        "others_unchanged": all(torch.equal(before_params[n], after_params[n]) for n in before_params if n != EMB),
        "other_moments_unchanged": all(torch.equal(a, b) for n in names if n != EMB
                                       for a, b in zip(before_moments[n], after_moments[n])),
        "tied_head_follows": torch.equal(after_params.get("lm_head.decoder_weight", after_params[EMB]), fresh),
    }
    ids = torch.randint(4, 49, (2, 16), generator=g)  # and training goes on from there
    engine.backward(engine(ids, torch.where(ids > 20, ids, torch.full_like(ids, -100))).loss)
    engine.step()
    report["trains_after"] = bool(torch.isfinite(full_params(engine)[EMB]).all())
    with open(os.path.join(out, f"rank{rank}.json"), "w") as fh:
        json.dump(report, fh)
    eng.barrier()


if __name__ == "__main__":
    main(*[a for a in sys.argv[1:] if not a.startswith("--local_rank")])
    eng.close_distributed()
    eng.exit_process(0)
