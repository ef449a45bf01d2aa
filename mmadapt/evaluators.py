"""Downstream figures of the primary model with a candidate set of target embeddings plugged in.

Step 2 calls ``PrimaryEvaluator`` at every evaluation (see stages/adapt.py): retrieval and zero-shot
scores are the verdict on the method, where the target MLM loss is only a diagnostic.
"""

from __future__ import annotations

import dataclasses

import torch

from .model import MiniJointForMaskedLM, masked_mean


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
        out.append(masked_mean(hidden, enc["attention_mask"].to(device)).float())
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


def common_task(metas: list):
    """The one task (spec) that fine-tuned models' finetune.json records share; models of different tasks,
    or of classify with different N, cannot be averaged."""
    from .errors import ConfigError
    from .tasks import spec_of

    specs = {spec_of(meta) for meta in metas}
    if len(specs) > 1:
        names = sorted(f"{spec.name} ({len(spec.labels)} labels)" for spec in specs)
        raise ConfigError(f"--task_models are fine-tuned for different tasks: {', '.join(names)}; fix: score "
                          "models of one task (and one label set) together")
    return specs.pop()


def zero_shot_figures(spec) -> tuple:
    """What zero-shot scoring reports for a task (each as ``zero_shot_<name>``): accuracy (pair tasks),
    accuracy and macro-F1 (classify), F1 (QA)."""
    return {"pair": ("accuracy",), "single": ("accuracy", "macro_f1"), "qa": ("f1",)}[spec.kind]


class ZeroShot:
    """Zero-shot figures of fine-tuned task models with the candidate embeddings swapped in, mean over them:
    accuracy (pair tasks), accuracy and macro-F1 (classify) or F1 (QA); see ``zero_shot_figures``.

    ``eval_files`` maps a figure prefix to a task file: {"": test, "dev_": dev} gives
    ``zero_shot_accuracy`` and ``dev_zero_shot_accuracy`` from one load of the models. The task models
    are plain copies on ``device``, all fine-tuned for one task (and, for classify, one N). ``distributed``:
    a collective, called on every rank; each rank scores a share of the examples and the counts
    (a classifier's confusion matrix, QA's F1 summed over examples) are summed across ranks, so macro-F1
    is the whole split's, not a mean of shares.
    """

    def __init__(self, task_dirs: list, eval_files: dict, target_tokenizer, device=None,
                 distributed: bool = False):
        import torch.distributed as dist

        from .artifacts import load_finetuned
        from .tasks import load_examples

        self.device = torch.device(device or "cpu")
        self.models = [load_finetuned(d) for d in task_dirs]
        self.spec = common_task([meta for _, _, _, meta in self.models])
        for _, task_model, _, _ in self.models:
            task_model.to(self.device)
        self.world = dist.get_world_size() if distributed and dist.is_initialized() else 1
        rank = dist.get_rank() if self.world > 1 else 0
        self.splits = {}  # prefix -> (this rank's examples, all examples' count)
        for prefix, path in eval_files.items():
            examples = load_examples(self.spec, path)
            self.splits[prefix] = (examples[rank::self.world], len(examples))
        self.target_tokenizer = target_tokenizer

    def _figures(self, task_model, meta: dict, examples: list, total: int) -> dict:
        """One model's figures on the whole split (every rank's share)."""
        import torch.distributed as dist

        from .tasks import classification_scores, confusion_matrix, predict_labels, score

        spec, n = self.spec, len(self.spec.labels)
        if spec.classifies:
            counts = confusion_matrix(*predict_labels(task_model, self.target_tokenizer, examples,
                                                      meta["max_seq_length"]), n) if examples \
                else torch.zeros(n, n, dtype=torch.float64)
        else:
            result = score(spec, task_model, self.target_tokenizer, examples, meta["max_seq_length"]) \
                if examples else {"f1": 0.0, "examples": 0}
            counts = torch.tensor([result["f1"] * result["examples"]], dtype=torch.float64)  # summed F1
        if self.world > 1:
            counts = counts.to(self.device)
            dist.all_reduce(counts)
            counts = counts.cpu()
        return classification_scores(spec, counts) if spec.classifies else {"f1": counts.item() / total}

    def __call__(self, embeddings: torch.Tensor) -> dict:
        from .packs import swap_language

        for _, task_model, _, _ in self.models:
            swap_language(task_model, {"word_embeddings": embeddings.detach().to(self.device)})
        out = {}
        for prefix, (examples, total) in self.splits.items():
            per_model = [self._figures(task_model, meta, examples, total) for _, task_model, _, meta in self.models]
            for key in zero_shot_figures(self.spec):
                scores = [figures[key] for figures in per_model]
                out[f"{prefix}zero_shot_{key}"] = sum(scores) / len(scores)
                out[f"{prefix}zero_shot_{key}_per_model"] = scores
        return out


class PrimaryEvaluator:
    """The primary model with the current embeddings plugged in: target MLM loss on held-out blocks,
    retrieval on parallel pairs and zero-shot task scores (each optionally on a dev split too: figures
    prefixed ``dev_``).

    A collective: built and called on every rank. Under ZeRO-3 the evaluation model is partitioned like
    the training engine (a DeepSpeed engine without optimizer), so no rank holds the whole primary model,
    which a step 2 through the mini-model never loads otherwise; under other stages each rank holds a copy
    on its device. Ranks share the held-out batches, the sentences to pool and the task examples. The
    masking of the held-out blocks is fixed, so every evaluation sees the same positions. Zero-shot
    scoring uses plain copies of the fine-tuned models on every rank's device.
    """

    def __init__(self, primary_cfg, primary_state: dict, target_tok, ds_config: dict, mlm_batches: list,
                 source_tok=None, pair_files: dict | None = None, parallel_limit: int = 1000,
                 task_models: list | None = None, task_files: dict | None = None):
        import torch.distributed as dist

        from . import engine as eng
        from .packs import LANGUAGE_SPECIFIC

        self.rank, self.world = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
        self.zero3 = eng.zero_stage(ds_config) == 3
        self.device = eng.device()
        self.retrieval = {}  # figure prefix -> Retrieval
        from .hf_io import select_keys

        body = select_keys(primary_state, lambda k: not k.startswith("mini_head."))
        if pair_files:
            # The source side is pooled once, by the primary model with its own embeddings.
            source = self._build(primary_cfg, body, ds_config)
            self.retrieval = {p: Retrieval(source, source_tok, target_tok, f, parallel_limit, distributed=True)
                              for p, f in pair_files.items()}
            del source
        self.model = self._build(dataclasses.replace(primary_cfg, vocab_size=len(target_tok)),
                                 select_keys(body, lambda k: k not in LANGUAGE_SPECIFIC), ds_config,
                                 strict_prefixes=("roberta.encoder.",))
        self.zero_shot = None
        if task_models:
            self.zero_shot = ZeroShot(task_models, task_files, target_tok, self.device, distributed=True)
        self.batches = mlm_batches

    def _build(self, model_cfg, state_dict: dict, ds_config: dict,
               strict_prefixes: tuple = ("roberta.", "lm_head.")) -> torch.nn.Module:
        from . import engine as eng
        from .hf_io import load_into

        cfg = dataclasses.replace(model_cfg, mini_head=False, mini_layers=None, hidden_dropout=0.0,
                                  attention_dropout=0.0, activation_checkpointing=False)
        model = eng.build_under_zero(lambda: MiniJointForMaskedLM(cfg), ds_config)
        load_into(model, state_dict, strict_prefixes)
        for p in model.parameters():
            p.requires_grad = False
        return eng.inference_module(model, ds_config).eval()

    def _plug_in(self, embeddings: torch.Tensor, head_bias: torch.Tensor) -> None:
        import deepspeed

        params = [self.model.roberta.embeddings.word_embeddings.weight, self.model.lm_head.bias]
        with deepspeed.zero.GatheredParameters(params, modifier_rank=0, enabled=self.zero3), torch.no_grad():
            for p, new in zip(params, (embeddings, head_bias)):
                p.copy_(new.to(p.device, p.dtype))

    @torch.no_grad()
    def _eval_loss(self) -> float:
        import torch.distributed as dist

        # Every rank runs the same number of forwards (ZeRO-3 gathers are collective): a rank out of
        # batches repeats the first one with weight 0.
        rounds = -(-len(self.batches) // self.world)
        sums = torch.zeros(2, dtype=torch.float64)
        for i in range(rounds):
            j = i * self.world + self.rank
            inputs, labels = self.batches[j] if j < len(self.batches) else self.batches[0]
            k = int(labels.ne(-100).sum()) if j < len(self.batches) else 0
            loss = self.model(inputs.to(self.device), labels.to(self.device)).mlm_loss
            sums += torch.tensor([loss.item() * k, k], dtype=torch.float64)
        if self.world > 1:
            sums = sums.to(self.device)
            dist.all_reduce(sums)
        return (sums[0] / sums[1].clamp(min=1)).item()

    def __call__(self, embeddings: torch.Tensor, head_bias: torch.Tensor) -> dict:
        """The same figures on every rank."""
        self._plug_in(embeddings, head_bias)
        out = {}
        if self.batches:
            out["eval_loss"] = self._eval_loss()
        for prefix, retrieval in self.retrieval.items():
            out.update({prefix + k: v for k, v in retrieval(self.model).items()})
        if self.zero_shot is not None:
            out.update(self.zero_shot(embeddings))
        return out
