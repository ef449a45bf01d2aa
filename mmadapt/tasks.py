"""Downstream tasks for steps 3 and 4: XNLI, PAWS-X (pair classification), classify (single-text
classification: SIB-200, topic, sentiment) and MLQA (extractive QA).

Data come from local files in the tasks' own schemas (jsonl, or tsv with a header row), which is what
tests use, or from `datasets` hub names for users with network access. Each example is checked: a
missing field, a label outside the task's set, or an answer that is not in its context is one clear
error naming the file and line. ``classify`` has no fixed label set: its labels are integers 0..N-1,
N given by ``--num_labels`` or read from the training data (largest label + 1), and a fine-tuned model
records its N (``num_labels`` in finetune.json; ``spec_of`` turns that record back into the task).
"""

from __future__ import annotations

import collections
import dataclasses
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
from .model import Encoder, Linear, TaskOutput, masked_mean


@dataclass(frozen=True)
class TaskSpec:
    name: str
    kind: str  # "pair", "single" (one text) or "qa"
    fields: tuple
    labels: tuple = ()  # classify: "0".."N-1" once N is known, () before
    hub: str = ""

    @property
    def classifies(self) -> bool:
        """A sequence classifier's task (pair or single text), scored by accuracy."""
        return self.kind != "qa"


TASKS = {
    "xnli": TaskSpec("xnli", "pair", ("premise", "hypothesis", "label"),
                     ("entailment", "neutral", "contradiction"), "xnli"),
    "pawsx": TaskSpec("pawsx", "pair", ("sentence1", "sentence2", "label"), ("different", "paraphrase"),
                      "paws-x"),
    "classify": TaskSpec("classify", "single", ("text", "label")),
    "mlqa": TaskSpec("mlqa", "qa", ("context", "question", "answers"), (), "mlqa"),
}


def task_spec(name: str, num_labels: Optional[int] = None) -> TaskSpec:
    """The task ``name``; for classify with ``num_labels`` N, its labels 0..N-1 (other tasks' sets are fixed)."""
    if name not in TASKS:
        raise ConfigError(f"--task {name!r} is not one of {', '.join(TASKS)}; fix: pick one of them")
    spec = TASKS[name]
    if num_labels is None or num_labels == len(spec.labels):
        return spec
    if spec.kind != "single":
        raise ConfigError(f"--num_labels {num_labels}: {name} has a fixed set of {len(spec.labels)} labels; fix: "
                          "drop --num_labels (it is for --task classify)")
    if num_labels < 2:
        raise ConfigError(f"--num_labels {num_labels}: a classifier needs at least 2 labels; fix: give N >= 2")
    return dataclasses.replace(spec, labels=tuple(str(i) for i in range(num_labels)))


def spec_of(meta: dict) -> TaskSpec:
    """The task a fine-tuned model was trained for, from its finetune.json (classify: with its N)."""
    return task_spec(meta["task"], meta.get("num_labels"))


def with_labels_of(spec: TaskSpec, examples: list, source: str) -> TaskSpec:
    """classify without --num_labels: N is the training data's largest label + 1 (others: as they are)."""
    if spec.kind != "single" or spec.labels:
        return spec
    n = max(e["label"] for e in examples) + 1
    if n < 2:
        raise ConfigError(f"task data {source}: every label is 0, so there is one class; fix: give examples of "
                          "at least 2 classes, or pass --num_labels N")
    return task_spec(spec.name, n)


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
    if spec.kind == "single":
        return _class_index(spec, value, where)
    if isinstance(value, int) and 0 <= value < len(spec.labels):
        return value
    if isinstance(value, str) and value in spec.labels:
        return spec.labels.index(value)
    raise ConfigError(f"{where}: label {value!r} is not in {spec.name}'s set {list(range(len(spec.labels)))} "
                      f"/ {list(spec.labels)}; fix: correct or drop the example")


def _class_index(spec: TaskSpec, value, where: str) -> int:
    """classify's label: an integer in 0..N-1 (any N >= its value + 1 while N is not known yet)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{where}: label {value!r} is not an integer; fix: classify labels are class indices "
                          "0..N-1 (map label names to integers first)")
    n = len(spec.labels)
    if value < 0 or (n and value >= n):
        known = f"0..{n - 1} ({n} labels)" if n else "0..N-1"
        raise ConfigError(f"{where}: label {value} is outside {known}; fix: correct or drop the example"
                          + (f", or fine-tune with --num_labels {value + 1} or more" if value >= n else ""))
    return value


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
        elif spec.kind == "single":
            out.append({"a": str(rec["text"]), "label": _label(spec, rec["label"], where)})
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
    task from it several times faster than from an <s> state that pretraining never used). The input
    is a sentence pair or, for classify, one text: the same model either way."""

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
            x = masked_mean(hidden, input_ids.ne(self.config.pad_token_id))
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
    return PairClassifier(cfg, len(spec.labels), pooling) if spec.classifies else SpanExtractor(cfg)


# ---------------------------------------------------------------------------------------- encoding


def encode_pairs(examples: list, tokenizer, max_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids and labels of a classifier's examples: sentence pairs, or single texts (classify)."""
    pairs = [e["b"] for e in examples] if "b" in examples[0] else None
    enc = tokenizer([e["a"] for e in examples], pairs, truncation=True,
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


def confusion_matrix(gold: torch.Tensor, pred: torch.Tensor, num_labels: int) -> torch.Tensor:
    """counts[g, p]: examples of gold label g predicted as p (float64, so that ranks can sum them)."""
    counts = torch.zeros(num_labels * num_labels, dtype=torch.float64)
    counts.index_add_(0, gold.long() * num_labels + pred.long(), torch.ones(len(gold), dtype=torch.float64))
    return counts.view(num_labels, num_labels)


def macro_f1(confusion: torch.Tensor) -> float:
    """The mean, over the labels present in gold or predictions, of each label's F1 = 2TP / (2TP + FP + FN);
    a label nobody used (zero row and column) does not count, as in scikit-learn's f1_score(average="macro")
    on the labels seen."""
    tp = confusion.diag()
    gold, pred = confusion.sum(1), confusion.sum(0)  # TP + FN, TP + FP
    present = (gold + pred) > 0
    if not present.any():
        return 0.0
    return (2 * tp[present] / (gold[present] + pred[present])).mean().item()


def classification_scores(spec: TaskSpec, confusion: torch.Tensor) -> dict:
    """Accuracy (every classifier) and macro-F1 (classify, whose classes may be unbalanced) of a confusion."""
    out = {"accuracy": (confusion.trace() / confusion.sum().clamp(min=1)).item()}
    if spec.kind == "single":
        out["macro_f1"] = macro_f1(confusion)
    return out


@torch.no_grad()
def predict_labels(model: nn.Module, tokenizer, examples: list, max_len: int,
                   batch_size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """(gold labels, a classifier's predictions) on ``examples``."""
    model.eval()
    device = next(model.parameters()).device
    ids, labels = encode_pairs(examples, tokenizer, max_len)
    preds = torch.cat([model.logits(ids[i:i + batch_size].to(device)).argmax(-1).cpu()
                       for i in range(0, len(ids), batch_size)])
    return labels, preds


MAX_ANSWER_TOKENS = 30


def span_mask(n: int, device, max_tokens: int = MAX_ANSWER_TOKENS) -> torch.Tensor:
    """allowed[s, e]: a span may start at token s and end at e (s <= e < s + max_tokens), built on ``device``,
    the scores' own (a CPU mask applied to an accelerator's scores fails or copies on every batch)."""
    ones = torch.ones(n, n, dtype=torch.bool, device=device)
    return torch.triu(ones) & ~torch.triu(ones, max_tokens)


@torch.no_grad()
def score(spec: TaskSpec, model: nn.Module, tokenizer, examples: list, max_len: int,
          batch_size: int = 64) -> dict:
    """Accuracy (pair tasks), accuracy and macro-F1 (classify) or exact match and F1 (QA) of ``model`` on
    ``examples``, each a fraction (0..1)."""
    if spec.classifies:
        gold, pred = predict_labels(model, tokenizer, examples, max_len, batch_size)
        return {**classification_scores(spec, confusion_matrix(gold, pred, len(spec.labels))),
                "examples": len(examples)}
    model.eval()
    device = next(model.parameters()).device
    ids, _, offsets, ctx, kept = encode_qa(examples, tokenizer, max_len, train=False)
    em = f1 = 0.0
    for start in range(0, len(ids), batch_size):
        logits = model.logits(ids[start:start + batch_size].to(device))
        mask = ctx[start:start + batch_size].to(device)
        s_log = logits[..., 0].masked_fill(~mask, -1e9)
        e_log = logits[..., 1].masked_fill(~mask, -1e9)
        scores = s_log[:, :, None] + e_log[:, None, :]
        n = scores.shape[1]
        flat = scores.masked_fill(~span_mask(n, scores.device), -1e9).flatten(1).argmax(-1)
        for j, idx in enumerate(flat.tolist()):
            s, e = divmod(idx, n)
            row = start + j
            ex = examples[kept[row]]
            text = ex["context"][offsets[row][s][0]:offsets[row][e][1]]
            em += max(float(_normalize(text) == _normalize(a)) for a in ex["answers"])
            f1 += max(squad_f1(text, a) for a in ex["answers"])
    n_all = len(examples)  # examples whose context was cut count as wrong
    return {"exact_match": em / n_all, "f1": f1 / n_all, "examples": n_all}
