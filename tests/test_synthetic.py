"""The synthetic SOURCE/TARGET benchmark: determinism, translation, disjointness, task labels."""

import json
import os
import random
from collections import Counter

import pytest

from mmadapt import synthetic as syn
from mmadapt.synthetic import output as syn_output
from mmadapt.errors import ConfigError
from mmadapt.synthetic import NP, Clause, Sentence, SyntheticConfig

SMALL = dict(lexicon_size=120, source_sentences=400, target_sentences=300, parallel_pairs=150,
             task_train=900, task_test=450)


def read(d, name):
    with open(os.path.join(d, name), encoding="utf-8") as f:
        return f.read().splitlines()


def generate_twice_identically(cfg, tmp_path):
    """Generate twice into two directories, check the task files match; (first dir, its meta)."""
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    meta = syn.generate(cfg, a)
    syn.generate(cfg, b)
    for name in ("task.source.train.jsonl", "task.source.test.jsonl", "task.target.test.jsonl"):
        assert read(a, name) == read(b, name), name
    return a, meta


def jsonl(d, name):
    return [json.loads(x) for x in read(d, name)]


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("syn") / "out")
    meta = syn.generate(SyntheticConfig(seed=3, **SMALL), d)
    return d, meta


def test_files_and_line_counts(out):
    d, meta = out
    assert sorted(os.listdir(d)) == sorted(syn.OUTPUT_FILES)
    expected = {"source.train.txt": 380, "source.test.txt": 20, "target.train.txt": 285,
                "target.test.txt": 15, "parallel.tsv": 150, "task.source.train.jsonl": 900,
                "task.source.test.jsonl": 450, "task.target.test.jsonl": 450}
    for name, n in expected.items():
        lines = read(d, name)
        assert len(lines) == n == meta["lines"][name], name
        assert all(line.strip() for line in lines), name
    for name in ("source.train.txt", "target.train.txt"):
        lengths = [len(line.split()) for line in read(d, name)]
        assert min(lengths) >= syn.MIN_WORDS and max(lengths) <= syn.MAX_WORDS
        assert len(set(lengths)) > 10  # varied lengths, not one template
        assert 2.0 < meta["unigram_entropy_nats"][name] < 8.0
    assert json.load(open(os.path.join(d, "meta.json"))) == meta
    assert meta["config"]["seed"] == 3 and meta["vocab"]["source_forms"] == len(read(d, "dictionary.tsv"))


def test_same_seed_same_bytes_other_seed_differs(out, tmp_path):
    d, _ = out
    syn.generate(SyntheticConfig(seed=3, **SMALL), str(tmp_path / "again"))
    for name in syn.OUTPUT_FILES:
        with open(os.path.join(d, name), "rb") as a, open(tmp_path / "again" / name, "rb") as b:
            assert a.read() == b.read(), name
    syn.generate(SyntheticConfig(seed=4, **SMALL), str(tmp_path / "other"))
    for name in ("dictionary.tsv", "source.train.txt", "target.train.txt", "task.source.test.jsonl"):
        assert read(d, name) != read(str(tmp_path / "other"), name), name
    # A different lexicon, not just different sentences.
    assert not set(read(d, "dictionary.tsv")) & set(read(str(tmp_path / "other"), "dictionary.tsv"))


def test_surface_vocabularies_are_disjoint_and_dictionary_is_one_to_one(out):
    d, _ = out
    pairs = [line.split("\t") for line in read(d, "dictionary.tsv")]
    src, tgt = [s for s, _ in pairs], [t for _, t in pairs]
    assert len(set(src)) == len(src) and len(set(tgt)) == len(tgt)
    assert not set(src) & set(tgt)
    assert all(w.isalpha() and w.islower() for w in src + tgt)
    def corpus_words(lang):
        return {w for split in ("train", "test") for x in read(d, f"{lang}.{split}.txt") for w in x.split()}

    src_corpus, tgt_corpus = corpus_words("source"), corpus_words("target")
    assert src_corpus <= set(src) and tgt_corpus <= set(tgt)
    assert not src_corpus & tgt_corpus and not set("".join(src)) & set("".join(tgt))
    lemmas = [line.split("\t") for line in read(d, "dictionary.lemmas.tsv")]
    assert len(lemmas) == SMALL["lexicon_size"] and {pos for *_, pos in lemmas} == {"noun", "verb", "adj"}


@pytest.mark.parametrize("order", ["sov", "svo"])
def test_parallel_pairs_are_reordered_word_by_word_translations(tmp_path, order):
    d = str(tmp_path / order)
    syn.generate(SyntheticConfig(seed=1, word_order=order, **{**SMALL, "task_train": 3, "task_test": 3}), d)
    dictionary = dict(line.split("\t") for line in read(d, "dictionary.tsv"))
    for line in read(d, "parallel.tsv"):
        source, target = line.split("\t")
        translated = [dictionary[w] for w in source.split()]
        assert Counter(translated) == Counter(target.split()), line
        assert translated != target.split(), line  # noun phrases at least are reordered


def test_word_order_of_one_clause():
    lex = syn.build_lexicon(0, 80)
    verb = next(v for v, (s, o) in enumerate(lex.verb_frame) if o is not None)
    s_cls, o_cls = lex.verb_frame[verb]
    subj, obj = lex.nouns_by_class[s_cls][0], lex.nouns_by_class[o_cls][-1]
    meaning = Sentence((Clause(NP(subj, True, lex.adjs_by_class[s_cls][0]), verb, NP(obj, False),
                               negated=True),))
    src, tgt = lex.words["source"], lex.words["target"]
    assert syn.Realiser(lex, "source").sentence(meaning).split() == [
        src["det"][s_cls][1], src["adj"][lex.adjs_by_class[s_cls][0]], src["noun"][subj][1], src["neg"],
        src["verb"][verb][1], src["det"][o_cls][0], src["noun"][obj][0]]
    t_subject = [tgt["noun"][subj][1], tgt["adj"][lex.adjs_by_class[s_cls][0]], tgt["det"][s_cls][1]]
    t_object = [tgt["noun"][obj][0], tgt["det"][o_cls][0]]
    t_verb = [tgt["verb"][verb][1], tgt["neg"]]
    assert syn.Realiser(lex, "target", "sov").sentence(meaning).split() == t_subject + t_object + t_verb
    assert syn.Realiser(lex, "target", "svo").sentence(meaning).split() == t_subject + t_verb + t_object
    assert src["noun"][subj][1] != src["noun"][subj][0]  # number is marked


def test_monolingual_corpora_are_not_translations_of_each_other(out):
    d, _ = out
    dictionary = dict(line.split("\t") for line in read(d, "dictionary.tsv"))
    translated = {" ".join(sorted(dictionary[w] for w in x.split())) for x in read(d, "source.train.txt")}
    target = [" ".join(sorted(x.split())) for x in read(d, "target.train.txt")]
    assert sum(x in translated for x in target) / len(target) < 0.1


def test_pronouns_have_a_unique_antecedent():
    lex = syn.build_lexicon(5, 120)
    sampler = syn.Sampler(lex, random.Random(0))
    n_pronouns = 0
    for _ in range(500):
        s = sampler.sentence()
        for i, c in enumerate(s.clauses):
            if c.subject.pronoun:
                n_pronouns += 1
                earlier = {(np.noun, np.plural) for e in s.clauses[:i] for np in syn.noun_phrases(e)}
                key = lambda e: (lex.noun_class[e[0]], e[1])  # noqa: E731
                assert (c.subject.noun, c.subject.plural) in earlier
                assert [key(e) for e in earlier].count(key((c.subject.noun, c.subject.plural))) == 1
    assert n_pronouns > 50


def test_task_labels_are_balanced(out):
    d, meta = out
    for split in ("source.train", "source.dev", "source.test", "target.dev", "target.test"):
        rows = jsonl(d, f"task.{split}.jsonl")
        counts = Counter(x["label"] for x in rows)
        assert set(counts) == {0, 1, 2} and max(counts.values()) - min(counts.values()) <= 1, split
        assert meta["task_labels"][split] == [counts[k] for k in range(3)]
        assert all(set(x) == {"premise", "hypothesis", "label"} for x in rows)
        assert all(x["premise"] != x["hypothesis"] for x in rows)


def test_target_task_is_in_the_target_language(out):
    d, _ = out
    tgt = {line.split("\t")[1] for line in read(d, "dictionary.tsv")}
    rows = jsonl(d, "task.target.test.jsonl")
    assert all(set((x["premise"] + " " + x["hypothesis"]).split()) <= tgt for x in rows)
    source_premises = {x["premise"] for x in jsonl(d, "task.source.test.jsonl")}
    dictionary = dict(line.split("\t") for line in read(d, "dictionary.tsv"))
    translated = {" ".join(sorted(dictionary[w] for w in p.split())) for p in source_premises}
    assert sum(" ".join(sorted(x["premise"].split())) in translated for x in rows) < len(rows) / 10


# An independent reading of the task's semantics, written from the clauses rather than from the
# module's facts: what a premise says about entities (adjectives) and events (verb, subject, object).
def premise_knowledge(premise):
    props, events = {}, {}
    for c in syn.resolved_clauses(premise):
        for np in (c.subject, c.obj):
            if np is not None and np.adj is not None:
                props.setdefault((np.noun, np.plural), set()).add(np.adj)
        if c.verb is None:
            said = c.adj if not c.negated else c.adj ^ 1  # "not big" is "small"
            props.setdefault((c.subject.noun, c.subject.plural), set()).add(said)
        else:
            obj = c.obj and (c.obj.noun, c.obj.plural)
            events.setdefault((c.verb, (c.subject.noun, c.subject.plural)), []).append((obj, c.negated))
    return props, events


def expected_label(premise, h):
    props, events = premise_knowledge(premise)
    verdicts = []  # True: implied, False: contradicted, None: unknown
    claims = [((np.noun, np.plural), np.adj) for np in (h.subject, h.obj)
              if np is not None and np.adj is not None]
    if h.verb is None:
        claims.append(((h.subject.noun, h.subject.plural), h.adj if not h.negated else h.adj ^ 1))
    for entity, adj in claims:
        known = props.get(entity, set())
        verdicts.append(True if adj in known else False if adj ^ 1 in known else None)
    if h.verb is not None:
        obj = h.obj and (h.obj.noun, h.obj.plural)
        said = events.get((h.verb, (h.subject.noun, h.subject.plural)), [])
        same = [neg for o, neg in said if o == obj]
        other_done = [o for o, neg in said if o != obj and not neg and o is not None and obj is not None]
        if same:
            verdicts.append(same[0] == h.negated)
        elif other_done:  # the subject did this to something else: one object per event
            verdicts.append(h.negated)
        else:
            verdicts.append(None)
    if False in verdicts:
        return syn.CONTRADICTION
    return syn.ENTAILMENT if all(v is True for v in verdicts) else syn.NEUTRAL


def test_labels_follow_from_the_meanings():
    lex = syn.build_lexicon(2, 120)
    pairs = syn.task_pairs(lex, random.Random(7), 600)
    assert Counter(y for *_, y in pairs) == {0: 200, 1: 200, 2: 200}
    for premise, h, label in pairs:
        assert syn.consistent(syn.sentence_facts(premise)) and syn.consistent(syn.clause_facts(h))
        for c in syn.resolved_clauses(premise) + [h]:  # nothing is done to itself
            assert c.obj is None or (c.obj.noun, c.obj.plural) != (c.subject.noun, c.subject.plural)
        assert expected_label(premise, h) == label, (premise, h, label)
        assert h.subject.rel is None and not h.subject.pronoun  # hypotheses are single plain clauses
    # Every label is reached by several kinds of hypothesis (not one template per label).
    kinds = Counter((y, h.verb is None, h.negated) for _, h, y in pairs)
    assert all(kinds[y, cop, neg] > 0 for y in range(3) for cop in (False, True) for neg in (False, True))


def test_judge_on_hand_made_pairs():
    lex = syn.build_lexicon(0, 80)
    verb = next(v for v, (s, o) in enumerate(lex.verb_frame) if o is not None)
    s_cls, o_cls = lex.verb_frame[verb]
    dog, cat = lex.nouns_by_class[s_cls][:2]
    fruit, nut = lex.nouns_by_class[o_cls][:2]
    big = lex.adjs_by_class[s_cls][0]
    small = big ^ 1
    # "the big dog eats the fruit"
    premise = syn.sentence_facts(Sentence((Clause(NP(dog, False, big), verb, NP(fruit, False)),)))

    def label(clause):
        return syn.judge(premise, syn.clause_facts(clause))

    assert label(Clause(NP(dog, False), verb, NP(fruit, False))) == syn.ENTAILMENT  # modifier dropped
    assert label(Clause(NP(dog, False), verb, NP(fruit, False), negated=True)) == syn.CONTRADICTION
    assert label(Clause(NP(dog, False), verb, NP(nut, False))) == syn.CONTRADICTION  # one object
    assert label(Clause(NP(dog, False), verb, NP(nut, False), negated=True)) == syn.ENTAILMENT
    assert label(Clause(NP(cat, False), verb, NP(fruit, False))) == syn.NEUTRAL  # another subject
    assert label(Clause(NP(dog, True), verb, NP(fruit, False))) == syn.NEUTRAL  # the dogs: other entity
    assert label(Clause(NP(dog, False), adj=big)) == syn.ENTAILMENT
    assert label(Clause(NP(dog, False), adj=small, negated=True)) == syn.ENTAILMENT  # not small = big
    assert label(Clause(NP(dog, False), adj=small)) == syn.CONTRADICTION
    assert label(Clause(NP(dog, False, small), verb, NP(fruit, False))) == syn.CONTRADICTION
    assert label(Clause(NP(cat, False), adj=small)) == syn.NEUTRAL


def overlap_ratio_baseline(train, test):
    """Majority label per (share of hypothesis words found in the premise, length ratio), bucketed."""
    def key(x):
        p, h = x["premise"].split(), x["hypothesis"].split()
        return round(sum(w in p for w in h) / len(h), 1), round(len(h) / len(p), 1)

    votes = {}
    for x in train:
        votes.setdefault(key(x), Counter())[x["label"]] += 1
    guess = lambda x: votes[key(x)].most_common(1)[0][0] if key(x) in votes else 0  # noqa: E731
    return sum(guess(x) == x["label"] for x in test) / len(test)


def test_lexical_overlap_baselines_do_not_solve_the_task(out):
    d, meta = out
    train, test = jsonl(d, "task.source.train.jsonl"), jsonl(d, "task.source.test.jsonl")
    assert meta["lexical_overlap_baseline_accuracy"] == round(syn.lexical_overlap_baseline(train, test), 4)
    # Well below 0.9, and below what the task scored before overlap was balanced across labels (~0.67).
    assert syn.lexical_overlap_baseline(train, test) < 0.62
    assert overlap_ratio_baseline(train, test) < 0.6
    # ...while the baseline does learn from cues that exist: it beats chance on a task that has them.
    leaky = [dict(x, hypothesis=f"{x['hypothesis']} cue{x['label']}") for x in train + test]
    assert syn.lexical_overlap_baseline(leaky[:len(train)], leaky[len(train):]) > 0.95


@pytest.mark.parametrize("field, value, flag", [
    ("lexicon_size", 10, "--lexicon_size"), ("lexicon_size", 10**6, "--lexicon_size"),
    ("source_sentences", 0, "--source_sentences"), ("target_sentences", 1, "--target_sentences"),
    ("parallel_pairs", 0, "--parallel_pairs"), ("task_train", -5, "--task_train"),
    ("task_test", 0, "--task_test"), ("word_order", "vso", "--word_order"), ("task_mode", "x", "--task_mode"),
    ("premise_negated", 1.5, "--premise_negated")])
def test_bad_config_is_a_one_line_config_error(tmp_path, field, value, flag):
    with pytest.raises(ConfigError) as exc:
        syn.generate(SyntheticConfig(**{**SMALL, field: value}), str(tmp_path / "o"))
    message = str(exc.value)
    assert message.startswith(flag) and "fix:" in message and "\n" not in message
    assert not os.path.exists(tmp_path / "o")


def test_output_is_written_atomically(tmp_path, monkeypatch):
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="--output"):
        syn.generate(SyntheticConfig(**SMALL), str(foreign))
    assert os.listdir(foreign) == ["notes.txt"]

    small = SyntheticConfig(**{**SMALL, "task_train": 3, "task_test": 3})
    target = tmp_path / "out"
    syn.generate(small, str(target))
    before = {name: (target / name).read_bytes() for name in syn.OUTPUT_FILES}
    opened = []

    def open_then_fail(*args, **kwargs):  # the disk fills up at the third file
        opened.append(args[0])
        if len(opened) == 3:
            raise OSError("disk full")
        return open(*args, **kwargs)

    monkeypatch.setattr(syn_output, "open", open_then_fail, raising=False)
    with pytest.raises(OSError, match="disk full"):
        syn.generate(SyntheticConfig(**{**SMALL, "seed": 9, "task_train": 3, "task_test": 3}), str(target))
    assert len(opened) == 3
    assert {name: (target / name).read_bytes() for name in syn.OUTPUT_FILES} == before
    assert sorted(os.listdir(tmp_path)) == ["foreign", "out"]  # no temporary directory left behind
    monkeypatch.undo()
    syn.generate(SyntheticConfig(**{**SMALL, "seed": 9, "task_train": 3, "task_test": 3}), str(target))
    assert {name: (target / name).read_bytes() for name in syn.OUTPUT_FILES} != before  # replaced


def test_cli(tmp_path, capsys):
    args = ["--output", str(tmp_path / "cli"), "--seed", "2", "--lexicon_size", "60", "--word_order", "svo",
            "--source_sentences", "40", "--target_sentences", "40", "--parallel_pairs", "5",
            "--task_train", "30", "--task_test", "12", "--task_dev", "9", "--parallel_dev", "4"]
    assert syn.main(args) == 0
    meta = json.load(open(tmp_path / "cli" / "meta.json"))
    assert meta["config"] == dict(seed=2, lexicon_size=60, word_order="svo", source_sentences=40,
                                  target_sentences=40, parallel_pairs=5, parallel_dev=4, task_train=30,
                                  task_test=12, task_dev=9, document_length=1, entity_reuse=0.5,
                                  task_mode="controlled", premise_negated=0.5)
    assert syn.main(["--output", str(tmp_path / "bad"), "--lexicon_size", "3"]) == 2
    assert capsys.readouterr().err.startswith("error: --lexicon_size 3")


# ------------------------------------------------------------------------- task mode "first_clause"
def test_first_clause_task_labels_follow_from_the_meanings():
    lex = syn.build_lexicon(2, 40)
    pairs = syn.task_pairs(lex, random.Random(7), 600, "first_clause")
    assert Counter(y for *_, y in pairs) == {0: 200, 1: 200, 2: 200}
    realiser = syn.Realiser(lex, "source")
    for premise, h, label in pairs:
        assert expected_label(premise, h) == label, (premise, h, label)
        assert syn.coherent(syn.resolved_clauses(premise)) and syn.coherent([h])
        first = premise.clauses[0]
        assert h.verb == first.verb and h.subject.adj is None and h.subject.rel is None
        if label == syn.ENTAILMENT:  # the first clause without its modifiers
            assert (h.subject.noun, h.subject.plural, h.negated) == (first.subject.noun, first.subject.plural,
                                                                     first.negated)
        if label == syn.NEUTRAL:  # about another entity of the subject's class that the premise names
            words = set(realiser.sentence(premise).split())
            assert h.subject.noun != first.subject.noun or h.subject.plural != first.subject.plural
            assert lex.noun_class[h.subject.noun] == lex.noun_class[first.subject.noun]
            assert realiser.np(syn.NP(h.subject.noun, h.subject.plural))[-1] in words
    # Polarity is no cue: premises and hypotheses are negated about half the time under every label.
    for y in range(3):
        hyps = [h.negated for _, h, label in pairs if label == y]
        firsts = [p.clauses[0].negated for p, _, label in pairs if label == y]
        assert 0.3 < sum(hyps) / len(hyps) < 0.7 and 0.3 < sum(firsts) / len(firsts) < 0.7, y


def test_first_clause_task_is_deterministic_balanced_and_translated(tmp_path):
    cfg = SyntheticConfig(seed=5, lexicon_size=40, source_sentences=40, target_sentences=40, parallel_pairs=5,
                          task_train=600, task_test=300, task_mode="first_clause")
    a, meta = generate_twice_identically(cfg, tmp_path)
    assert meta["task_labels"] == {"source.train": [200, 200, 200], "source.dev": [200, 200, 200], "source.test": [100, 100, 100],
                                   "target.dev": [200, 200, 200], "target.test": [100, 100, 100]}
    src_words = {w for x in read(a, "dictionary.tsv") for w in [x.split("\t")[0]]}
    tgt = jsonl(a, "task.target.test.jsonl")
    assert all(set((x["premise"] + " " + x["hypothesis"]).split()).isdisjoint(src_words) for x in tgt)
    # Surface cues (new words, negation words) leave the task far from solved.
    train, test = jsonl(a, "task.source.train.jsonl"), jsonl(a, "task.source.test.jsonl")
    assert syn.lexical_overlap_baseline(train, test) < 0.72
    assert overlap_ratio_baseline(train, test) < 0.6


# --------------------------------------------------------------------------- task mode "one_clause"
def test_one_clause_task_labels_follow_from_the_meanings():
    lex = syn.build_lexicon(4, 40)
    pairs = syn.task_pairs(lex, random.Random(1), 600, "one_clause")
    assert Counter(y for *_, y in pairs) == {0: 200, 1: 200, 2: 200}
    for premise, h, label in pairs:
        assert expected_label(premise, h) == label, (premise, h, label)
        (c,) = premise.clauses  # one clause, no relative clause, no pronoun
        assert all(np.rel is None and not np.pronoun for np in (c.subject, c.obj) if np is not None)
        assert h.verb == c.verb and h.subject.adj is None and (h.obj is None or h.obj.adj is None)
        if label == syn.NEUTRAL:  # another entity of the same class, not named in the premise
            assert lex.noun_class[h.subject.noun] == lex.noun_class[c.subject.noun]
            assert h.subject.noun not in {np.noun for np in syn.noun_phrases(c)}
    for y in range(3):  # polarity of premise and hypothesis is no cue by itself
        hyps = [h.negated for _, h, label in pairs if label == y]
        prem = [p.clauses[0].negated for p, _, label in pairs if label == y]
        assert 0.3 < sum(hyps) / len(hyps) < 0.7 and 0.3 < sum(prem) / len(prem) < 0.7, y


def test_affirmative_premises_leave_labels_decided_by_the_meanings():
    lex = syn.build_lexicon(4, 40)
    pairs = syn.task_pairs(lex, random.Random(2), 300, "one_clause", premise_negated=0.0)
    assert Counter(y for *_, y in pairs) == {0: 100, 1: 100, 2: 100}
    assert not any(p.clauses[0].negated for p, _, _ in pairs)
    for premise, h, label in pairs:
        assert expected_label(premise, h) == label, (premise, h, label)
    # a negated hypothesis about the premise's own subject is a contradiction; never an entailment
    assert all(label != syn.ENTAILMENT for _, h, label in pairs if h.negated)


def test_one_clause_task_is_deterministic_and_in_each_language(tmp_path):
    cfg = SyntheticConfig(seed=6, lexicon_size=40, source_sentences=40, target_sentences=40, parallel_pairs=5,
                          task_train=300, task_test=150, task_mode="one_clause")
    a, meta = generate_twice_identically(cfg, tmp_path)
    assert meta["task_labels"]["target.test"] == [50, 50, 50]
    pairs = [x.split("\t") for x in read(a, "dictionary.tsv")]
    src, tgt = {s for s, _ in pairs}, {t for _, t in pairs}
    for split, vocab in (("source.train", src), ("target.test", tgt)):
        examples = jsonl(a, f"task.{split}.jsonl")
        assert all(set((x["premise"] + " " + x["hypothesis"]).split()) <= vocab for x in examples)
    # Surface cues go a long way here (reported in meta.json), but do not solve it outright.
    assert 0.5 < meta["lexical_overlap_baseline_accuracy"] < 0.95


def test_dev_split_is_drawn_apart_from_the_test_split(tmp_path):
    """Selection reads dev, the verdict test: the two splits share no example and no pair."""
    d = tmp_path / "dev"
    syn.generate(SyntheticConfig(**{**SMALL, "task_test": 150, "task_dev": 120, "parallel_dev": 60}), str(d))
    dev = [json.loads(x) for x in (d / "task.target.dev.jsonl").read_text().splitlines()]
    test = [json.loads(x) for x in (d / "task.target.test.jsonl").read_text().splitlines()]
    assert len(dev) == 120 and len(test) == 150
    assert [sum(x["label"] == k for x in dev) for k in range(3)] == [40, 40, 40]
    key = lambda x: (x["premise"], x["hypothesis"])  # noqa: E731
    assert len({key(x) for x in dev} & {key(x) for x in test}) <= 2  # short sentences may recur by chance
    dev_pairs = (d / "parallel.dev.tsv").read_text().splitlines()
    test_pairs = set((d / "parallel.tsv").read_text().splitlines())
    assert len(dev_pairs) == 60 and all("\t" in p for p in dev_pairs)
    assert len(set(dev_pairs) & test_pairs) <= 2


def test_documents_make_nouns_recur_across_consecutive_sentences(tmp_path):
    """Within a document a noun often comes back; independent sentences share few."""
    def shared_nouns(length):
        d = tmp_path / f"docs{length}"
        syn.generate(SyntheticConfig(**{**SMALL, "source_sentences": 2000, "task_train": 3, "task_test": 3,
                                        "document_length": length, "entity_reuse": 0.8}), str(d))
        lex = syn.build_lexicon(SMALL.get("seed", 0), SMALL["lexicon_size"])
        nouns = {f for pair in lex.words["source"]["noun"] for f in pair}
        lines = [set(x.split()) & nouns for x in (d / "source.train.txt").read_text().splitlines()]
        return sum(bool(a & b) for a, b in zip(lines, lines[1:])) / (len(lines) - 1)

    independent, documents = shared_nouns(1), shared_nouns(4)
    assert documents > 2 * independent, (independent, documents)  # measured: 0.21 -> 0.49


def test_source_word_order_is_a_relexification(tmp_path):
    """--word_order source: a target sentence is its source sentence word by word through the dictionary."""
    d = tmp_path / "relex"
    syn.generate(SyntheticConfig(**{**SMALL, "word_order": "source", "task_train": 3, "task_test": 3}), str(d))
    dictionary = dict(x.split("\t") for x in (d / "dictionary.tsv").read_text().splitlines())
    for line in (d / "parallel.tsv").read_text().splitlines()[:50]:
        source, target = line.split("\t")
        assert [dictionary[w] for w in source.split()] == target.split()
