"""Downstream figures of the primary model with a candidate set of target embeddings plugged in.

Step 2 calls these at every evaluation (see stages/adapt.py): they are the verdict on the method,
where the target MLM loss is only a diagnostic.
"""

from __future__ import annotations

import torch

from .model import MiniJointForMaskedLM


@torch.no_grad()
def mean_pooled(model: MiniJointForMaskedLM, tokenizer, sentences: list, max_len: int = 128,
                batch_size: int = 64, distributed: bool = False) -> torch.Tensor:
    """One vector per sentence (on the CPU): the mean of the last hidden states over its real tokens.

    ``distributed``: every rank of the process group pools an equal share and the shares are gathered.
    The shares are padded to one length, so every rank runs the same number of forwards: under ZeRO-3
    each forward gathers parameters collectively.
    """
    import torch.distributed as dist

    model.eval()
    world = dist.get_world_size() if distributed and dist.is_initialized() else 1
    share = -(-len(sentences) // world)
    mine = sentences[dist.get_rank() * share:][:share] if world > 1 else sentences
    mine = mine + sentences[-1:] * (share - len(mine))
    device = _device_of(model)
    out = []
    for i in range(0, len(mine), batch_size):
        enc = tokenizer(mine[i:i + batch_size], truncation=True, max_length=max_len, padding=True,
                        return_tensors="pt")
        hidden, _ = model.encode(enc["input_ids"].to(device))
        mask = enc["attention_mask"].to(device).unsqueeze(-1).to(hidden.dtype)
        out.append(((hidden * mask).sum(1) / mask.sum(1)).float())
    vecs = torch.cat(out)
    if world > 1:
        shares = [torch.empty_like(vecs) for _ in range(world)]
        dist.all_gather(shares, vecs)
        vecs = torch.cat(shares)[:len(sentences)]
    return vecs.cpu()


def _device_of(model: torch.nn.Module) -> torch.device:
    """Where the model computes; a ZeRO-3 partitioned parameter's shard sits on that device too."""
    p = next(model.parameters())
    return getattr(p, "ds_tensor", p).device


def retrieval_top1(source_vecs: torch.Tensor, target_vecs: torch.Tensor) -> float:
    """Share of target sentences whose nearest source sentence is their translation.

    Each side is centred first: the pooled states of a small model share one dominant direction, and
    uncentred cosines then rank by that direction rather than by meaning.
    """
    s = torch.nn.functional.normalize(source_vecs - source_vecs.mean(0), dim=-1)
    t = torch.nn.functional.normalize(target_vecs - target_vecs.mean(0), dim=-1)
    best = (t @ s.T).argmax(-1)
    return (best == torch.arange(len(t))).float().mean().item()


def read_parallel(path: str, limit: int) -> tuple[list, list]:
    from .errors import ConfigError

    src, tgt = [], []
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            parts = line.rstrip("\n").split("\t")
            if len(parts) != 2:
                raise ConfigError(f"parallel file {path}:{lineno}: needs source<TAB>target; fix: that format")
            src.append(parts[0])
            tgt.append(parts[1])
            if len(src) >= limit:
                break
    if not src:
        raise ConfigError(f"parallel file {path}: empty; fix: give source<TAB>target lines")
    return src, tgt


class Retrieval:
    """Top-1 retrieval on parallel pairs: source side by the source model as it is (computed once).

    ``distributed``: a collective, called on every rank (see mean_pooled)."""

    def __init__(self, source_model: MiniJointForMaskedLM, source_tokenizer, target_tokenizer, path: str,
                 limit: int = 1000, distributed: bool = False):
        src, self.targets = read_parallel(path, limit)
        self.distributed = distributed
        self.source_vecs = mean_pooled(source_model, source_tokenizer, src, distributed=distributed)
        self.target_tokenizer = target_tokenizer

    def __call__(self, model: MiniJointForMaskedLM) -> dict:
        target_vecs = mean_pooled(model, self.target_tokenizer, self.targets, distributed=self.distributed)
        return {"retrieval_top1": retrieval_top1(self.source_vecs, target_vecs)}


class ZeroShot:
    """Accuracy (or F1) of fine-tuned task models with the candidate embeddings swapped in, mean over them.

    ``eval_files`` maps a figure prefix to a task file: {"": test, "dev_": dev} gives
    ``zero_shot_accuracy`` and ``dev_zero_shot_accuracy`` from one load of the models. The task models
    are plain copies on ``device``. ``distributed``: a collective, called on every rank; each rank scores
    a share of the examples and the sums are reduced across ranks.
    """

    def __init__(self, task_dirs: list, eval_files: dict, target_tokenizer, device=None,
                 distributed: bool = False):
        import torch.distributed as dist

        from .stages.finetune import load_finetuned
        from .tasks import load_examples

        self.device = torch.device(device or "cpu")
        self.models = [load_finetuned(d) for d in task_dirs]
        for _, task_model, _, _ in self.models:
            task_model.to(self.device)
        self.world = dist.get_world_size() if distributed and dist.is_initialized() else 1
        rank = dist.get_rank() if self.world > 1 else 0
        self.splits = {}  # prefix -> (this rank's examples, all examples' count)
        for prefix, path in eval_files.items():
            examples = load_examples(self.models[0][0], path)
            self.splits[prefix] = (examples[rank::self.world], len(examples))
        self.target_tokenizer = target_tokenizer

    def __call__(self, embeddings: torch.Tensor) -> dict:
        import torch.distributed as dist

        from .packs import swap_language
        from .tasks import score

        key = "accuracy" if self.models[0][0].kind == "pair" else "f1"
        for _, task_model, _, _ in self.models:
            swap_language(task_model, {"word_embeddings": embeddings.detach().to(self.device)})
        out = {}
        for prefix, (examples, total) in self.splits.items():
            sums = []  # per model: the score times the examples it covers (correct answers, or F1 points)
            for spec, task_model, _, meta in self.models:
                if examples:
                    result = score(spec, task_model, self.target_tokenizer, examples, meta["max_seq_length"])
                    sums.append(result[key] * result["examples"])
                else:
                    sums.append(0.0)
            if self.world > 1:
                reduced = torch.tensor(sums, dtype=torch.float64, device=self.device)
                dist.all_reduce(reduced)
                sums = reduced.tolist()
            scores = [x / total for x in sums]
            out[f"{prefix}zero_shot_{key}"] = sum(scores) / len(scores)
            out[f"{prefix}zero_shot_{key}_per_model"] = scores
        return out
