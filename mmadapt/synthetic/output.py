"""Writing a language pair to disk: corpora, translation pairs, dictionary, task splits and meta.json."""

from __future__ import annotations

import json
import math
import os
import random
import sys
from collections import Counter
from dataclasses import asdict, dataclass

from ..artifacts import PairDir
from ..config import _f
from ..errors import ConfigError
from ..outdir import check_replaceable, replaced_directory
from .config import OUTPUT_FILES, SyntheticConfig, check_config
from .meanings import Sentence
from .lexicon import build_lexicon
from .grammar import Realiser
from .sampler import Sampler
from .task import lexical_overlap_baseline, task_pairs


def unigram_entropy(lines: list[str]) -> float:
    """Entropy in nats of the word unigram distribution of a corpus."""
    counts = Counter(w for line in lines for w in line.split())
    total = sum(counts.values())
    return -sum(c / total * math.log(c / total) for c in counts.values())


def _check(cfg: SyntheticConfig, output_dir: str) -> None:
    check_config(cfg)
    check_replaceable(output_dir, OUTPUT_FILES, "--output")


def generate(cfg: SyntheticConfig, output_dir: str) -> dict:
    """Write the benchmark files of `cfg` into output_dir (atomically) and return the meta dict."""
    _check(cfg, output_dir)
    lex = build_lexicon(cfg.seed, cfg.lexicon_size)
    src, tgt = Realiser(lex, "source"), Realiser(lex, "target", cfg.word_order)
    stream = lambda name: random.Random(f"{cfg.seed}:{name}")  # noqa: E731 - independent samples
    files: dict[str, list[str]] = {}
    for lang, realiser, n in (("source", src, cfg.source_sentences), ("target", tgt, cfg.target_sentences)):
        sampler = Sampler(lex, stream(f"{lang}-corpus"), cfg.entity_reuse)
        lines = [realiser.sentence(s) for s in sampler.documents(n, cfg.document_length)]
        n_test = max(1, n // 20)
        files[PairDir.text_name(lang, "train")], files[PairDir.text_name(lang, "test")] = lines[n_test:], lines[:n_test]
    for name, stream_name, n in ((PairDir.parallel_name("test"), "parallel", cfg.parallel_pairs),
                                 (PairDir.parallel_name("dev"), "parallel-dev", cfg.parallel_dev)):
        sampler = Sampler(lex, stream(stream_name))
        files[name] = [f"{src.sentence(s)}\t{tgt.sentence(s)}" for s in (sampler.sentence() for _ in range(n))]
    files[PairDir.DICTIONARY] = [f"{s}\t{t}" for s, t in zip(lex.forms("source"), lex.forms("target"))]
    files[PairDir.LEMMA_DICTIONARY] = [f"{s}\t{t}\t{pos}" for pos in ("noun", "verb", "adj")
                                      for s, t in zip(lex.stems["source"][pos], lex.stems["target"][pos])]
    task = {}
    for split, realiser, n in (("source.train", src, cfg.task_train), ("source.dev", src, cfg.task_dev),
                               ("source.test", src, cfg.task_test), ("target.dev", tgt, cfg.task_dev),
                               ("target.test", tgt, cfg.task_test)):
        task[split] = [{"premise": realiser.sentence(p), "hypothesis": realiser.sentence(Sentence((h,))),
                        "label": y} for p, h, y in task_pairs(lex, stream(f"task-{split}"), n, cfg.task_mode,
                                                                  cfg.premise_negated)]
        files[PairDir.task_name(*split.split("."))] = [json.dumps(x) for x in task[split]]
    train = (PairDir.text_name("source", "train"), PairDir.text_name("target", "train"))
    meta = {
        "generator": "mmadapt.synthetic",
        "config": asdict(cfg),
        "lines": {name: len(lines) for name, lines in files.items()},
        "vocab": {"source_forms": len(lex.forms("source")), "target_forms": len(lex.forms("target")),
                  "nouns": len(lex.noun_class), "verbs": len(lex.verb_frame),
                  "adjectives": len(lex.adj_class),
                  **{f"{n}_types": len({w for x in files[n] for w in x.split()}) for n in train}},
        "unigram_entropy_nats": {n: round(unigram_entropy(files[n]), 4) for n in train},
        "task_labels": {s: [sum(x["label"] == k for x in v) for k in range(3)] for s, v in task.items()},
        "lexical_overlap_baseline_accuracy": round(
            lexical_overlap_baseline(task["source.train"], task["source.test"]), 4),
        "label_names": ["entailment", "neutral", "contradiction"],
    }
    texts = {name: "".join(line + "\n" for line in lines) for name, lines in files.items()}
    texts[PairDir.META] = json.dumps(meta, indent=2) + "\n"
    _write_atomically(output_dir, texts)
    return meta


def _write_atomically(output_dir: str, texts: dict[str, str]) -> None:
    """All files appear together or none do (see mmadapt/outdir.py)."""
    with replaced_directory(output_dir, OUTPUT_FILES) as tmp:
        for name, text in texts.items():
            with open(os.path.join(tmp, name), "w", encoding="utf-8", newline="\n") as f:
                f.write(text)


@dataclass
class GeneratorOutput:
    output_dir: str = _f(None, "directory to write (created; an earlier output of the generator is replaced)",
                         aliases=("--output",))


def main(argv=None) -> int:
    from ..config import ArgumentParser, add_dataclass_args

    package_doc = sys.modules[__package__].__doc__  # the generator's own description, in __init__.py
    p = ArgumentParser(prog="python -m mmadapt.synthetic", description=package_doc.split("\n\n")[0])
    add_dataclass_args(p, GeneratorOutput, "output")
    add_dataclass_args(p, SyntheticConfig, "language and task")
    args = vars(p.parse_args(argv))
    output = args.pop("output_dir", None)
    try:
        if not output:
            raise ConfigError("--output_dir is missing; fix: pass the directory to write")
        meta = generate(SyntheticConfig(**args), output)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {output}: {json.dumps(meta['lines'])}; entropy {meta['unigram_entropy_nats']}; "
          f"lexical-overlap baseline {meta['lexical_overlap_baseline_accuracy']}")
    return 0
