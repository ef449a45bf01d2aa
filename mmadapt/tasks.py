"""Downstream tasks for steps 3 and 4: XNLI, PAWS-X (pair classification) and MLQA (extractive QA).

Data come from local files in the tasks' own schemas (jsonl, or tsv with a header row), which is what
tests use, or from `datasets` hub names for users with network access. Each example is checked: a
missing field, a label outside the task's set, or an answer that is not in its context is one clear
error naming the file and line.
"""

from __future__ import annotations

import collections
import json
import re
import string
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from .config import ModelConfig
from .errors import ConfigError
from .model import Encoder, Linear, TaskOutput


@dataclass(frozen=True)
class TaskSpec:
    name: str
    kind: str  # "pair" or "qa"
    fields: tuple
    labels: tuple = ()
    hub: str = ""


TASKS = {
    "xnli": TaskSpec("xnli", "pair", ("premise", "hypothesis", "label"),
                     ("entailment", "neutral", "contradiction"), "xnli"),
    "pawsx": TaskSpec("pawsx", "pair", ("sentence1", "sentence2", "label"), ("different", "paraphrase"),
                      "paws-x"),
    "mlqa": TaskSpec("mlqa", "qa", ("context", "question", "answers"), (), "mlqa"),
}


def task_spec(name: str) -> TaskSpec:
    if name not in TASKS:
        raise ConfigError(f"--task {name!r} is not one of {', '.join(TASKS)}; fix: pick one of them")
    return TASKS[name]


def _records(path: str):
    from .data import check_text_file

    check_text_file(path, text_field=None)
    with open(path, encoding="utf-8") as fh:
        if path.endswith(".tsv"):
            header = fh.readline().rstrip("\n").split("\t")
            for lineno, line in enumerate(fh, 2):
                if line.strip():
                    yield lineno, dict(zip(header, line.rstrip("\n").split("\t")))
            return
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                yield lineno, json.loads(line)
            except json.JSONDecodeError as exc:
                raise ConfigError(f"task file {path}:{lineno}: not JSON ({exc.msg}); fix: one object a line") \
                    from None


def _label(spec: TaskSpec, value, where: str) -> int:
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        value = int(value)
    if isinstance(value, int) and 0 <= value < len(spec.labels):
        return value
    if isinstance(value, str) and value in spec.labels:
        return spec.labels.index(value)
    raise ConfigError(f"{where}: label {value!r} is not in {spec.name}'s set {list(range(len(spec.labels)))} "
                      f"/ {list(spec.labels)}; fix: correct or drop the example")


def load_examples(spec: TaskSpec, path=None, dataset: Optional[str] = None,
                  config: Optional[str] = None, split: str = "train") -> list:
    """Checked examples: dicts with the spec's fields (labels as ints; QA answers as lists). ``path``: a
    file or a list of files (concatenated)."""
    if isinstance(path, (list, tuple)) and not dataset:
        if not path:
            raise ConfigError(f"no data for {spec.name}; fix: pass a local file or --dataset_name")
        return [x for one in path for x in load_examples(spec, one)]
    if dataset:
        import datasets
        rows = enumerate(datasets.load_dataset(dataset, config, split=split), 1)
        source = f"{dataset}/{config}:{split}"
    elif path:
        rows, source = _records(path), path
    else:
        raise ConfigError(f"no data for {spec.name}; fix: pass a local file or --dataset_name")
    out = []
    for lineno, rec in rows:
        where = f"task file {source}:{lineno}"
        missing = [f for f in spec.fields if f not in rec or rec[f] in (None, "")]
        if missing:
            raise ConfigError(f"{where}: missing field(s) {missing}; fix: every example needs {list(spec.fields)}")
        if spec.kind == "pair":
            out.append({"a": str(rec[spec.fields[0]]), "b": str(rec[spec.fields[1]]),
                        "label": _label(spec, rec["label"], where)})
        else:
            answers = rec["answers"]
            texts, starts = list(answers["text"]), [int(s) for s in answers["answer_start"]]
            for text, start in zip(texts, starts):
                if rec["context"][start:start + len(text)] != text:
                    raise ConfigError(f"{where}: answer {text!r} is not in the context at {start}; fix: "
                                      "correct answer_start or drop the example")
            out.append({"id": rec.get("id", str(lineno)), "context": rec["context"],
                        "question": rec["question"], "answers": texts, "starts": starts})
    if not out:
        raise ConfigError(f"task data {source}: no examples; fix: give a file with examples")
    return out


# ------------------------------------------------------------------------------------------ models


POOLINGS = ("cls", "mean")


class PairClassifier(nn.Module):
    """Encoder + Hugging Face's RoBERTa classification head, on the <s> token (``cls``, as Hugging Face)
    or on the mean of the non-padding states (``mean``: the same weights; small models learn a pair
    task from it several times faster than from an <s> state that pretraining never used)."""

    def __init__(self, cfg: ModelConfig, num_labels: int, pooling: str = "cls"):
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"pooling {pooling!r} is not one of {POOLINGS}")
        self.config = cfg
        self.pooling = pooling
        self.roberta = Encoder(cfg)
        self.classifier = nn.Module()
        self.classifier.dense = Linear(cfg.hidden_size, cfg.hidden_size, cfg.initializer_range)
        self.classifier.out_proj = Linear(cfg.hidden_size, num_labels, cfg.initializer_range)
        self.dropout = nn.Dropout(cfg.hidden_dropout)

    def logits(self, input_ids: torch.Tensor) -> torch.Tensor:
        hidden = self.roberta(input_ids, self.config.activation_checkpointing)
        if self.pooling == "cls":
            x = hidden[:, 0]
        else:
            keep = input_ids.ne(self.config.pad_token_id).unsqueeze(-1).to(hidden.dtype)
            x = (hidden * keep).sum(1) / keep.sum(1)
        x = torch.tanh(self.classifier.dense(self.dropout(x)))
        return self.classifier.out_proj(self.dropout(x))

    def forward(self, input_ids: torch.Tensor, labels: torch.Tensor) -> TaskOutput:
        loss = F.cross_entropy(self.logits(input_ids).float(), labels)
        return TaskOutput(loss=loss)


class SpanExtractor(nn.Module):
    """Encoder + start/end logits per token (Hugging Face's qa_outputs)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.config = cfg
        self.roberta = Encoder(cfg)
        self.qa_outputs = Linear(cfg.hidden_size, 2, cfg.initializer_range)

    def logits(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.qa_outputs(self.roberta(input_ids, self.config.activation_checkpointing)).float()

    def forward(self, input_ids: torch.Tensor, labels: torch.Tensor) -> TaskOutput:
        start, end = self.logits(input_ids).unbind(-1)
        loss = (F.cross_entropy(start, labels[:, 0]) + F.cross_entropy(end, labels[:, 1])) / 2
        return TaskOutput(loss=loss)


def build_task_model(spec: TaskSpec, cfg: ModelConfig, pooling: str = "cls") -> nn.Module:
    return SpanExtractor(cfg) if spec.kind == "qa" else PairClassifier(cfg, len(spec.labels), pooling)


# ---------------------------------------------------------------------------------------- encoding


def encode_pairs(examples: list, tokenizer, max_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    enc = tokenizer([e["a"] for e in examples], [e["b"] for e in examples], truncation=True,
                    max_length=max_len, padding="max_length", return_tensors="pt")
    return enc["input_ids"], torch.tensor([e["label"] for e in examples])


def encode_qa(examples: list, tokenizer, max_len: int, train: bool):
    """Question first, then context (truncated); labels are the answer's token span.

    Training examples whose answer was cut off are dropped. Returns (ids, spans, offsets, context
    masks, kept example indices); offsets map context tokens back to characters for scoring.
    """
    enc = tokenizer([e["question"] for e in examples], [e["context"] for e in examples],
                    truncation="only_second", max_length=max_len, padding="max_length",
                    return_offsets_mapping=True)
    ids, spans, offsets, ctx_masks, kept = [], [], [], [], []
    for i, ex in enumerate(examples):
        seq = enc.sequence_ids(i)
        ctx = [s == 1 for s in seq]
        offs = enc["offset_mapping"][i]
        span = (0, 0)
        if ex["answers"]:
            a0 = ex["starts"][0]
            a1 = a0 + len(ex["answers"][0])
            toks = [t for t, (o, c) in enumerate(zip(offs, ctx)) if c and o[0] < a1 and o[1] > a0]
            if toks:
                span = (toks[0], toks[-1])
            elif train:
                continue
        ids.append(enc["input_ids"][i])
        spans.append(span)
        offsets.append(offs)
        ctx_masks.append(ctx)
        kept.append(i)
    if not ids:
        raise ConfigError("every QA example's answer lies past --max_seq_length; fix: raise it")
    return (torch.tensor(ids), torch.tensor(spans), offsets, torch.tensor(ctx_masks), kept)


# ----------------------------------------------------------------------------------------- scoring


def _normalize(text: str) -> str:
    text = "".join(ch for ch in text.lower() if ch not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def squad_f1(prediction: str, truth: str) -> float:
    p, t = _normalize(prediction).split(), _normalize(truth).split()
    common = collections.Counter(p) & collections.Counter(t)
    same = sum(common.values())
    if not p or not t:
        return float(p == t)
    if same == 0:
        return 0.0
    precision, recall = same / len(p), same / len(t)
    return 2 * precision * recall / (precision + recall)


@torch.no_grad()
def score(spec: TaskSpec, model: nn.Module, tokenizer, examples: list, max_len: int,
          batch_size: int = 64) -> dict:
    """Accuracy (pair tasks) or exact match and F1 in % (QA) of ``model`` on ``examples``."""
    model.eval()
    device = next(model.parameters()).device
    if spec.kind == "pair":
        ids, labels = encode_pairs(examples, tokenizer, max_len)
        preds = torch.cat([model.logits(ids[i:i + batch_size].to(device)).argmax(-1).cpu()
                           for i in range(0, len(ids), batch_size)])
        return {"accuracy": (preds == labels).float().mean().item(), "examples": len(examples)}
    ids, _, offsets, ctx, kept = encode_qa(examples, tokenizer, max_len, train=False)
    em = f1 = 0.0
    for start in range(0, len(ids), batch_size):
        logits = model.logits(ids[start:start + batch_size].to(device))
        mask = ctx[start:start + batch_size].to(device)
        s_log = logits[..., 0].masked_fill(~mask, -1e9)
        e_log = logits[..., 1].masked_fill(~mask, -1e9)
        # best span with start <= end < start + 30
        scores = s_log[:, :, None] + e_log[:, None, :]
        n = scores.shape[1]
        allowed = torch.triu(torch.ones(n, n, dtype=torch.bool)) & ~torch.triu(torch.ones(n, n, dtype=torch.bool), 30)
        flat = scores.masked_fill(~allowed, -1e9).flatten(1).argmax(-1)
        for j, idx in enumerate(flat.tolist()):
            s, e = divmod(idx, n)
            row = start + j
            ex = examples[kept[row]]
            text = ex["context"][offsets[row][s][0]:offsets[row][e][1]]
            em += max(float(_normalize(text) == _normalize(a)) for a in ex["answers"])
            f1 += max(squad_f1(text, a) for a in ex["answers"])
    n_all = len(examples)  # examples whose context was cut count as wrong
    return {"exact_match": 100 * em / n_all, "f1": 100 * f1 / n_all, "examples": n_all}
