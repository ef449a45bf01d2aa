"""Training text: checked up front, tokenized once (cached), packed into blocks, sharded by step.

The batch for (step, micro-batch, rank) is a pure function of the seed, so a resumed run sees exactly
the samples the uninterrupted run would have, and ranks never overlap.
"""

from __future__ import annotations

import codecs
import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, Optional

import torch

from .errors import ConfigError

JSON_SUFFIXES = (".jsonl", ".json")
PACK_BATCH = 1000  # texts packed together; each such batch drops its own last partial block


def check_text_file(path: str, text_field: Optional[str] = "text") -> None:
    """Exists, is UTF-8 throughout, and holds at least one non-blank text (in ``text_field`` for jsonl;
    None skips that check, for files with other schemas)."""
    if not os.path.isfile(path):
        raise ConfigError(f"text file {path}: not found; fix: check the path (--train_files, --input)")
    decoder = codecs.getincrementaldecoder("utf-8")()
    has_text, offset = False, 0
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 22):
            try:
                text = decoder.decode(chunk)
            except UnicodeDecodeError as exc:
                raise ConfigError(f"text file {path}: not UTF-8 at byte {offset + exc.start}; fix: "
                                  "convert it (iconv -t UTF-8) or leave it out") from None
            has_text = has_text or bool(text.strip())
            offset += len(chunk)
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            raise ConfigError(f"text file {path}: ends inside a UTF-8 character; fix: convert or "
                              "repair it") from None
    if not has_text:
        raise ConfigError(f"text file {path}: empty; fix: give a file with text or drop it")
    if text_field is not None and path.endswith(JSON_SUFFIXES):
        for _ in _iter_jsonl(path, text_field):
            return
        raise ConfigError(f"text file {path}: no record has text in field {text_field!r}; fix: set "
                          "--text_field")


def _iter_jsonl(path: str, text_field: str) -> Iterator[str]:
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ConfigError(f"text file {path}:{lineno}: not JSON ({exc.msg}); fix: one JSON "
                                  "object a line") from None
            if not isinstance(record, dict) or text_field not in record:
                raise ConfigError(f"text file {path}:{lineno}: no field {text_field!r}; fix: set "
                                  "--text_field to the field holding the text")
            text = str(record[text_field]).strip()
            if text:
                yield text


def iter_texts(paths: Iterable[str], text_field: str = "text") -> Iterator[str]:
    """Non-blank texts: a line of a .txt file, or a jsonl record's ``text_field``."""
    for path in paths:
        check_text_file(path, text_field)
        if path.endswith(JSON_SUFFIXES):
            yield from _iter_jsonl(path, text_field)
        else:
            with open(path, encoding="utf-8") as fh:
                for line in fh:
                    if line.strip():
                        yield line.strip()


def default_cache_dir() -> str:
    return os.environ.get("MMADAPT_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "mmadapt")


def _cache_key(files: list, dataset: Optional[str], tokenizer, seq_len: int, text_field: str) -> str:
    h = hashlib.sha256()
    for path in files:
        st = os.stat(path)
        h.update(f"{os.path.abspath(path)}:{st.st_size}:{st.st_mtime_ns}".encode())
    h.update(f"{dataset}|{seq_len}|{text_field}|{len(tokenizer)}".encode())
    h.update(json.dumps(tokenizer.get_vocab(), sort_keys=True).encode())
    return h.hexdigest()[:20]


def pack_blocks(batch: dict, seq_len: int) -> dict:
    """Concatenate tokenized texts (each already <s> ... </s>) and cut fixed-length blocks."""
    flat = [t for ids in batch["input_ids"] for t in ids]
    n = len(flat) // seq_len * seq_len
    return {"input_ids": [flat[i:i + seq_len] for i in range(0, n, seq_len)]}


def build_blocks(tokenizer, seq_len: int, files: list, dataset_name: Optional[str] = None,
                 dataset_config: Optional[str] = None, text_field: str = "text",
                 cache_dir: Optional[str] = None, is_main: bool = True,
                 barrier: Callable[[], None] = lambda: None):
    """Packed token blocks as a ``datasets.Dataset`` (torch format), built once and cached on disk.

    Rank 0 builds; the other ranks wait at ``barrier`` and then read the same cache.
    """
    import datasets

    cache_root = cache_dir or default_cache_dir()
    key = _cache_key(files, dataset_name, tokenizer, seq_len, text_field)
    path = os.path.join(cache_root, "blocks", key)
    if is_main and not os.path.isdir(path):
        if dataset_name:
            raw = datasets.load_dataset(dataset_name, dataset_config, split="train")
            if text_field not in raw.column_names:
                raise ConfigError(f"--dataset_name {dataset_name}: no column {text_field!r} (has "
                                  f"{raw.column_names}); fix: set --text_field")
            raw = raw.select_columns([text_field]).rename_column(text_field, "text")
        else:
            texts = iter_texts(files, text_field)
            raw = datasets.Dataset.from_dict({"text": list(texts)})
        tokenized = raw.map(lambda b: {"input_ids": tokenizer(b["text"])["input_ids"]}, batched=True,
                            remove_columns=raw.column_names, desc="tokenize")
        blocks = tokenized.map(pack_blocks, batched=True, batch_size=PACK_BATCH, fn_kwargs={"seq_len": seq_len},
                               desc="pack")
        tmp = path + ".tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        blocks.save_to_disk(tmp)
        os.replace(tmp, path)
    barrier()
    return datasets.load_from_disk(path).with_format("torch")


@dataclass
class BatchPlan:
    """Which blocks each rank reads at each step: a fresh seeded permutation per epoch."""

    num_blocks: int
    global_batch: int
    micro_batch: int
    world_size: int
    seed: int

    def __post_init__(self):
        if self.num_blocks < self.global_batch:
            raise ConfigError(f"training data packs into {self.num_blocks} blocks, fewer than one global "
                              f"batch ({self.global_batch}); fix: add text or lower --global_batch_size or "
                              "--max_seq_length")
        self.steps_per_epoch = self.num_blocks // self.global_batch
        self._epoch, self._perm = -1, None

    def _permutation(self, epoch: int) -> torch.Tensor:
        if epoch != self._epoch:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._epoch, self._perm = epoch, torch.randperm(self.num_blocks, generator=g)
        return self._perm

    def first_row(self, micro: int, rank: int) -> int:
        """Position in the global batch of this (micro-batch, rank)'s first sequence."""
        return (micro * self.world_size + rank) * self.micro_batch

    def indices(self, step: int, micro: int, rank: int) -> torch.Tensor:
        epoch, pos = divmod(step, self.steps_per_epoch)
        batch = self._permutation(epoch)[pos * self.global_batch:(pos + 1) * self.global_batch]
        start = self.first_row(micro, rank)
        return batch[start:start + self.micro_batch]


def row_generator(seed: int, step: int, row: int) -> torch.Generator:
    """RNG for the masking of one sequence: a function of its step and place in the global batch, so a
    resumed run repeats it exactly, on any world size or micro-batch split."""
    return torch.Generator().manual_seed((seed * 1_000_003 + step) * 65_537 + row)


def text_unigram_entropy(blocks, tokenizer) -> float:
    """Unigram entropy (nats) of the non-special tokens: the loss of a model that ignores context."""
    counts = torch.zeros(len(tokenizer), dtype=torch.float64)
    for start in range(0, len(blocks), 4096):
        ids = blocks[start:start + 4096]["input_ids"].reshape(-1)
        counts += torch.bincount(ids, minlength=len(tokenizer)).double()
    counts[torch.tensor(tokenizer.all_special_ids)] = 0
    p = counts[counts > 0] / counts.sum()
    return float(-(p * p.log()).sum())


def expected_predicted_tokens(blocks, tokenizer, probability: float, sample: int = 4096) -> float:
    """Masked positions per block on average: ``probability`` times the non-special, non-padding tokens
    (the masker never picks the others), measured on up to ``sample`` blocks. What the FLOP formulas
    need as the heads' token count, where batch x length x probability would count <s>, </s> and padding."""
    ids = blocks[:min(sample, len(blocks))]["input_ids"]
    special = torch.tensor(sorted(set(tokenizer.all_special_ids)))
    return probability * float((~torch.isin(ids, special)).sum()) / len(ids)
