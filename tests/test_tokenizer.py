"""`mmadapt tokenizer train`: XLM-R special-token layout, round trip, bad input."""

import json

import pytest
from transformers import AutoTokenizer

from mmadapt.cli import main as cli
from mmadapt.errors import ConfigError
from mmadapt.tokenizer import load_tokenizer


def test_cli_trains_xlmr_layout_from_txt_and_jsonl(tmp_path, capsys):
    txt = tmp_path / "a.txt"
    txt.write_text("der hund sieht die katze\nla casa es grande\n" * 200, encoding="utf-8")
    jl = tmp_path / "b.jsonl"
    jl.write_text("\n".join(json.dumps({"body": f"zahl {i} und wort"}) for i in range(200)), encoding="utf-8")
    assert cli(["tokenizer", "train", "--input", str(txt), str(jl), "--text_field", "body",
                "--vocab_size", "40", "--output", str(tmp_path / "tok")]) == 0
    tok = AutoTokenizer.from_pretrained(tmp_path / "tok")
    assert [tok.convert_tokens_to_ids(t) for t in ("<s>", "<pad>", "</s>", "<unk>")] == [0, 1, 2, 3]
    assert tok.mask_token_id == len(tok) - 1 == 39
    ids = tok("der hund sieht die katze")["input_ids"]
    assert ids[0] == 0 and ids[-1] == 2 and tok.unk_token_id not in ids
    assert tok.decode(ids, skip_special_tokens=True) == "der hund sieht die katze"
    assert "40 tokens" in capsys.readouterr().out
    assert load_tokenizer(str(tmp_path / "tok")) is not None


def test_tokenizer_without_xlmr_specials_is_refused(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    raw = Tokenizer(models.WordLevel({"[UNK]": 0, "[PAD]": 1, "a": 2, "b": 3}, unk_token="[UNK]"))
    raw.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=raw, unk_token="[UNK]", pad_token="[PAD]").save_pretrained(
        tmp_path / "bert")
    with pytest.raises(ConfigError, match="special token <s> has id missing"):
        load_tokenizer(str(tmp_path / "bert"))


def test_non_utf8_input_is_one_clear_error(tmp_path, capsys):
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("ok line\ncaf\xe9 au lait\n".encode("latin-1"))
    assert cli(["tokenizer", "train", "--input", str(bad), "--vocab_size", "50",
                "--output", str(tmp_path / "tok")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "not UTF-8 at byte 11" in err and str(bad) in err
    assert not (tmp_path / "tok").exists()


def test_whole_word_vocabulary_keeps_frequent_words_whole_and_spells_out_the_rest(tmp_path, capsys):
    txt = tmp_path / "a.txt"
    txt.write_text("kupa lusipu ka tisimu\nlusa kananu ti natisi kupa\n" * 50 + "rare\n", encoding="utf-8")
    # 26 = 4 specials + <mask> + "▁" + 12 letters + the 8 frequent words: "rare" does not fit whole
    assert cli(["tokenizer", "train", "--input", str(txt), "--vocab_size", "26", "--whole_words",
                "--output", str(tmp_path / "tok")]) == 0
    tok = load_tokenizer(str(tmp_path / "tok"))  # the XLM-R layout checks pass
    assert len(tok) == 26 and tok.mask_token_id == 25
    assert tok.tokenize("kupa lusipu ka tisimu") == ["\u2581kupa", "\u2581lusipu", "\u2581ka", "\u2581tisimu"]
    ids = tok("lusa kananu rare")["input_ids"]
    assert tok.unk_token_id not in ids and len(ids) == 2 + 2 + 5  # "rare" spelled out: ▁ r a r e
    assert tok.decode(ids, skip_special_tokens=True) == "lusa kananu rare"
    assert cli(["tokenizer", "train", "--input", str(txt), "--vocab_size", "12", "--whole_words",
                "--output", str(tmp_path / "small")]) == 2
    assert "--vocab_size 12 leaves no room" in capsys.readouterr().err
    assert not (tmp_path / "small").exists()


def test_permuted_tokenizer_is_a_cipher_of_the_same_segmentation(tmp_path):
    from mmadapt.tokenizer import permuted_tokenizer, train_tokenizer

    txt = tmp_path / "a.txt"
    txt.write_text("der hund sieht die katze\nla casa es grande y blanca\n" * 100, encoding="utf-8")
    source = train_tokenizer([str(txt)], 40, str(tmp_path / "src"))
    cipher = permuted_tokenizer(str(tmp_path / "src"), str(tmp_path / "cipher"), seed=3)
    assert len(cipher) == len(source) and cipher.mask_token_id == source.mask_token_id
    text = "la casa sieht die katze"
    assert cipher.tokenize(text) == source.tokenize(text)
    a, b = source(text)["input_ids"], cipher(text)["input_ids"]
    assert a != b and (a[0], a[-1]) == (b[0], b[-1]) == (0, 2)
    # one fixed permutation of the ordinary ids
    mapping = {s: c for s, c in zip(a, b)}
    sv, cv = source.get_vocab(), cipher.get_vocab()
    assert all(cv[piece] == mapping[sv[piece]] for piece in source.tokenize(text))
