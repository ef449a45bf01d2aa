"""SentencePiece unigram tokenizers in XLM-R's layout, saved as Hugging Face tokenizers.

Layout: ``<s>``=0, ``<pad>``=1, ``</s>``=2, ``<unk>``=3, the sentencepiece pieces, ``<mask>`` last. This is
fairseq's dictionary order, which XLM-R's own tokenizer reproduces from its sentencepiece model.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Iterable, Optional

from .errors import ConfigError

SPECIAL_LAYOUT = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3}
# sentencepiece's own control pieces (<unk>, <s>, </s>), which the layout above replaces.
SPM_CONTROL_PIECES = 3


def whole_word_vocab(texts: Iterable[str], vocab_size: int) -> list:
    """(piece, score) pieces: the most frequent whitespace words whole, then every character as a fallback.

    Scores are log frequencies, characters far below any word, so a known word is always one token and
    an unknown one is spelled out. For languages with few word forms (the synthetic benchmark), where
    a unigram model's subword splits would differ between two languages whose words correspond one to
    one, and a small model would have to learn to compose them before anything could transfer.
    """
    import math
    from collections import Counter

    words, chars = Counter(), Counter()
    for text in texts:
        for word in text.split():
            words[word] += 1
            chars.update(word)
    budget = vocab_size - len(SPECIAL_LAYOUT) - 1 - 1 - len(chars)  # specials, <mask>, "▁", characters
    if budget < 1:
        raise ConfigError(f"--vocab_size {vocab_size} leaves no room for whole words beside {len(chars)} "
                          "characters; fix: raise --vocab_size")
    total = sum(words.values())
    kept = words.most_common(budget)
    floor = math.log(kept[-1][1] / total) - 20.0  # characters: far below the rarest kept word
    pieces = [("▁" + w, math.log(c / total)) for w, c in kept]
    pieces.append(("▁", floor))
    pieces += [(ch, floor - 1.0) for ch, _ in chars.most_common()]
    return pieces


def whole_word_vocab_size(inputs: Iterable[str], text_field: str = "text") -> int:
    """The size at which ``whole_word_vocab`` keeps every word of the text whole."""
    from .data import iter_texts

    words, chars = set(), set()
    for text in iter_texts(list(inputs), text_field):
        for word in text.split():
            words.add(word)
            chars.update(word)
    return len(SPECIAL_LAYOUT) + 1 + 1 + len(chars) + len(words)  # specials, <mask>, "▁", characters


def train_tokenizer(inputs: Iterable[str], vocab_size: int, output: str, text_field: str = "text",
                    max_sentences: int = 2_000_000, seed: int = 0, whole_words: bool = False) -> "object":
    """Train on ``inputs`` (.txt or .jsonl) and save to ``output``; returns the tokenizer.

    ``whole_words``: a vocabulary of whole words instead of a sentencepiece unigram model (see
    ``whole_word_vocab``); the saved tokenizer is the same Hugging Face unigram tokenizer either way.
    """
    import sentencepiece as spm
    from sentencepiece import sentencepiece_model_pb2
    from transformers import XLMRobertaTokenizer

    from .data import iter_texts

    if vocab_size < 10:
        raise ConfigError(f"--vocab_size {vocab_size} is too small; fix: use at least 10")
    inputs = list(inputs)
    if whole_words:
        vocab = [(piece, 0.0) for piece in SPECIAL_LAYOUT]
        vocab += whole_word_vocab(iter_texts(inputs, text_field), vocab_size)
        vocab.append(("<mask>", 0.0))
        return save_atomically(XLMRobertaTokenizer(vocab=vocab), output)
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
        return save_atomically(tok, output, {"sentencepiece.bpe.model": os.path.join(work, "spm.model")})
    finally:
        shutil.rmtree(work, ignore_errors=True)


def permuted_tokenizer(source_dir: str, out_dir: str, seed: int = 0):
    """A cipher of a language: its tokenizer with the ordinary pieces' ids shuffled (specials and <mask>
    stay). Text segments exactly as before, into permuted ids, so the source embeddings, permuted, are
    a perfect answer for step 2: the control that shows whether a model can transfer at all."""
    import json
    import random

    from transformers import XLMRobertaTokenizer

    source = load_tokenizer(source_dir)
    pieces = [tuple(v) for v in json.loads(source.backend_tokenizer.to_str())["model"]["vocab"]]
    head, body, mask = pieces[:len(SPECIAL_LAYOUT)], pieces[len(SPECIAL_LAYOUT):-1], pieces[-1]
    random.Random(seed).shuffle(body)
    return save_atomically(XLMRobertaTokenizer(vocab=head + body + [mask]), out_dir)


# What a saved tokenizer directory holds: an existing --output is replaced only if it holds nothing else.
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                   "sentencepiece.bpe.model")


def save_atomically(tok, output: str, extra_files: Optional[dict] = None):
    """Write the tokenizer (and extra files: name -> source path) to a temporary directory, then rename
    it into place: a crash never leaves half a tokenizer, and a directory holding anything but an earlier
    tokenizer is refused, not replaced. Returns it loaded back, layout checked."""
    from .outdir import replaced_directory

    with replaced_directory(output, TOKENIZER_FILES) as tmp:
        tok.save_pretrained(tmp)
        for name, source in (extra_files or {}).items():
            shutil.copy(source, os.path.join(tmp, name))
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
