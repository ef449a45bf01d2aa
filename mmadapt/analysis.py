"""After the demo's stages: what the embeddings each path learned do inside the primary model.

One process, reading the stages' outputs: the dictionary oracle's zero-shot score (the ceiling any
step 2 could reach word by word) and, for the step-0, oracle and each path's best embeddings, how close
the primary model's states are for a source sentence and its translation, layer by layer.
"""

from __future__ import annotations

import dataclasses

import torch


def analyse(out: str, task_dirs: list, paths: tuple, seed: int = 0) -> dict:
    from .alignment import dictionary_embeddings, layer_similarity
    from .evaluators import ZeroShot
    from .hf_io import load_into, load_pretrained_state_dict, pretrained_model_config
    from .model import MiniJointForMaskedLM, fresh_embedding_rows
    from .artifacts import DemoDir, load_pack
    from .tokenizer import load_tokenizer

    run = DemoDir(out)
    pair = run.data
    primary = run.pretrain.hf
    cfg = pretrained_model_config(primary)
    state = load_pretrained_state_dict(primary)
    source_tok, target_tok = load_tokenizer(run.tokenizer("source")), load_tokenizer(run.tokenizer("target"))
    oracle, mapped = dictionary_embeddings(state["roberta.embeddings.word_embeddings.weight"], source_tok, target_tok,
                                           pair.dictionary, std=cfg.initializer_range)
    zero_shot = ZeroShot(task_dirs, {"": pair.task("target", "test"), "dev_": pair.task("target", "dev")}, target_tok)
    scores = zero_shot(oracle)

    model = MiniJointForMaskedLM(dataclasses.replace(cfg, mini_head=False, mini_layers=None, hidden_dropout=0.0,
                                                     attention_dropout=0.0))
    load_into(model, state)
    step0 = fresh_embedding_rows(dataclasses.replace(cfg, vocab_size=len(target_tok)), seed)  # as step 2 starts
    candidates = {"step 0 (random)": step0, "dictionary oracle": oracle}
    for path in paths:
        candidates[f"{path} best"] = load_pack(run.step2(path).path, "best")[0]["word_embeddings"]
    pairs = pair.parallel("dev")
    similarity = {name: layer_similarity(model, source_tok, target_tok, pairs, rows)
                  for name, rows in candidates.items()}
    translation = {name: translation_accuracy(rows, state["roberta.embeddings.word_embeddings.weight"], source_tok,
                                              target_tok, pair.dictionary)
                   for name, rows in candidates.items()}
    return {"oracle": {"zero_shot_accuracy": scores["zero_shot_accuracy"],
                       "dev_zero_shot_accuracy": scores["dev_zero_shot_accuracy"], "words_mapped": mapped},
            "mini_layers": cfg.mini_layers, "num_layers": cfg.num_layers,
            "layer_similarity": similarity, "translation_top1": translation}


def translation_accuracy(target_rows: torch.Tensor, source_rows: torch.Tensor, source_tok, target_tok,
                         dictionary_path: str) -> float:
    """Share of dictionary words whose target row's nearest source word row (cosine) is the translation."""
    sv, tv = source_tok.get_vocab(), target_tok.get_vocab()
    pairs = []
    with open(dictionary_path, encoding="utf-8") as fh:
        for line in fh:
            s, t = line.rstrip("\n").split("\t")[:2]
            if "▁" + s in sv and "▁" + t in tv:
                pairs.append((sv["▁" + s], tv["▁" + t]))
    if not pairs:
        return 0.0
    words = torch.tensor(sorted({s for s, _ in pairs}))
    src = torch.nn.functional.normalize(source_rows[words].float(), dim=-1)
    tgt = torch.nn.functional.normalize(target_rows[torch.tensor([t for _, t in pairs])].float(), dim=-1)
    nearest = words[(tgt @ src.T).argmax(-1)]
    return float((nearest == torch.tensor([s for s, _ in pairs])).float().mean())
