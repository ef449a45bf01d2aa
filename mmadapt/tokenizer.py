"""SentencePiece unigram tokenizers in XLM-R's layout, saved as Hugging Face tokenizers.

Layout: ``<s>``=0, ``<pad>``=1, ``</s>``=2, ``<unk>``=3, the sentencepiece pieces, ``<mask>`` last. This is
fairseq's dictionary order, which XLM-R's own tokenizer reproduces from its sentencepiece model.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Iterable

from .errors import ConfigError

SPECIAL_LAYOUT = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3}
# sentencepiece's own control pieces (<unk>, <s>, </s>), which the layout above replaces.
SPM_CONTROL_PIECES = 3


def train_tokenizer(inputs: Iterable[str], vocab_size: int, output: str, text_field: str = "text",
                    max_sentences: int = 2_000_000, seed: int = 0) -> "object":
    """Train on ``inputs`` (.txt or .jsonl) and save to ``output``; returns the tokenizer."""
    import sentencepiece as spm
    from sentencepiece import sentencepiece_model_pb2
    from transformers import XLMRobertaTokenizer

    from .data import iter_texts

    if vocab_size < 10:
        raise ConfigError(f"--vocab_size {vocab_size} is too small; fix: use at least 10")
    inputs = list(inputs)
    work = tempfile.mkdtemp(prefix="mmadapt-spm-")
    try:
        corpus = os.path.join(work, "corpus.txt")
        with open(corpus, "w", encoding="utf-8") as out:
            n = 0
            for text in iter_texts(inputs, text_field):
                out.write(text.replace("\n", " ") + "\n")
                n += 1
        spm.set_random_generator_seed(seed)
        # The final vocabulary adds <pad> and <mask> to sentencepiece's pieces.
        spm.SentencePieceTrainer.train(
            input=corpus, model_prefix=os.path.join(work, "spm"), vocab_size=vocab_size - 2,
            model_type="unigram", character_coverage=0.9999, input_sentence_size=max_sentences,
            shuffle_input_sentence=True, hard_vocab_limit=False, num_threads=os.cpu_count() or 1,
            minloglevel=2, seed_sentencepiece_size=1_000_000)
        proto = sentencepiece_model_pb2.ModelProto()
        with open(os.path.join(work, "spm.model"), "rb") as fh:
            proto.ParseFromString(fh.read())
        vocab = [(piece, 0.0) for piece in SPECIAL_LAYOUT]
        vocab += [(p.piece, p.score) for p in proto.pieces[SPM_CONTROL_PIECES:]]
        vocab.append(("<mask>", 0.0))
        tok = XLMRobertaTokenizer(
            vocab=vocab, _spm_precompiled_charsmap=proto.normalizer_spec.precompiled_charsmap or None)
        tmp = output.rstrip("/") + ".tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tok.save_pretrained(tmp)
        shutil.copy(os.path.join(work, "spm.model"), os.path.join(tmp, "sentencepiece.bpe.model"))
        shutil.rmtree(output, ignore_errors=True)
        os.replace(tmp, output)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return load_tokenizer(output)


def load_tokenizer(path: str):
    """Load a tokenizer and check it has XLM-R's special tokens where the model expects them."""
    from transformers import AutoTokenizer

    if os.path.sep in path and not os.path.isdir(path):
        raise ConfigError(f"--tokenizer {path}: no such directory; fix: make one with "
                          "`mmadapt tokenizer train`")
    try:
        tok = AutoTokenizer.from_pretrained(path)
    except Exception as exc:  # noqa: BLE001 - transformers raises many types for a bad directory
        raise ConfigError(f"--tokenizer {path}: cannot load ({type(exc).__name__}: {exc}); fix: make one "
                          "with `mmadapt tokenizer train`") from None
    vocab = tok.get_vocab()
    for token, want in SPECIAL_LAYOUT.items():
        got = vocab.get(token, "missing")
        if got != want:
            raise ConfigError(f"--tokenizer {path}: special token {token} has id {got}, expected {want} "
                              "(XLM-R layout); fix: retrain with `mmadapt tokenizer train`")
    if tok.mask_token_id is None or tok.mask_token_id != len(tok) - 1:
        raise ConfigError(f"--tokenizer {path}: <mask> must be the last token (id {len(tok) - 1}), has "
                          f"{tok.mask_token_id}; fix: retrain with `mmadapt tokenizer train`")
    return tok
