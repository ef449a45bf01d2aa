"""`mmadapt demo`: mini-model adaptation against the standard approach on the built-in bilingual benchmark.

Every stage is a real launcher run on ``--nproc`` ranks through the ``deepspeed`` launcher:

1. generate a source and a target language (mmadapt/synthetic/: same grammar and meanings, disjoint
   words; a dev and a test split of the target task and pairs) and train both tokenizers;
2. MiniJoint pretraining on the source (primary head + mini head after layer k);
3. MiniPost (step 1b) from that same primary model: its embeddings and layers 1..k frozen, new layers
   and a new head trained on the source; its FLOPs are a one-time cost, reported apart;
4. fine-tune the primary model on the source task, embeddings frozen, once per ``--finetune_seeds``;
5. step 2 through the full model (standard), the MiniJoint and the MiniPost mini-model with the *same
   FLOP budget* (a cheaper path takes proportionally more steps), evaluating the primary model with the
   current embeddings at the same FLOP marks: zero-shot task accuracy (mean over the fine-tuned models)
   and retrieval on dev and on test, and the target MLM loss;
6. the report: ``report.md``, ``report.json`` and PNG plots in ``--output_dir``. "Best" is always chosen
   on dev and scored on test; the dictionary oracle (each target word given its translation's source
   row) shows the ceiling that word order and the task leave to any step 2.

``--instances N`` runs N instances (seeds ``--seed`` .. ``--seed + N - 1``, each in ``seed-S/``) and
writes ``instances.md`` / ``instances.json``: every instance's verdict, the mean and the spread.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from dataclasses import dataclass

from .artifacts import LOGS_DIR, DemoDir, has_tokenizer
from .config import _f
from .errors import ConfigError, exit_status
from .orchestrate import Runs, StageCall

DEMO_MARKER = ".mmadapt-demo"
PATHS = ("full", "mini", "minipost")  # step-2 stage names: step2-full, step2-mini, step2-minipost


def demo_made(entry: str) -> bool:
    """An entry of --output_dir that the demo writes (and so may replace)."""
    return entry in DemoDir.ENTRIES or entry.startswith(DemoDir.PREFIXES) or entry.endswith(".png")


@dataclass
class DemoConfig:
    output_dir: str = _f("runs/demo", "where everything goes (a directory the demo made, or a new one)",
                         aliases=("--output",))
    seed: int = _f(0, "seed of the (first) instance: data, initialisation, order")
    instances: int = _f(1, "instances to run, seeds --seed, --seed + 1, ...; >1 adds instances.md")
    nproc: int = _f(2, "ranks per stage (the deepspeed launcher's --num_gpus; CPU ranks without GPUs)")
    # Data parallel (ZeRO stage 0): a small model gains nothing from partitioning, and on CPU ranks
    # ZeRO-3's per-layer gathers make each step about 2.5x slower (ds_configs/zero3_cpu.json runs the same).
    deepspeed_config: str = _f("ds_configs/dp_cpu.json", "DeepSpeed JSON of every stage (a shipped one by name "
                               "from anywhere, or a path)")
    # data (mmadapt/synthetic/)
    lexicon_size: int = _f(120, "content lemmas of the generated languages (40..5000)")
    word_order: str = _f("source", "target word order: source (the source's orders, only the words "
                         "differ), svo or sov (see mmadapt/synthetic/)", choices=("source", "svo", "sov"))
    document_length: int = _f(4, "sentences per document; nouns recur within one (1: independent sentences)")
    entity_reuse: float = _f(0.5, "chance that a noun is one its document already mentioned")
    source_sentences: int = _f(40000, "source sentences (95% train)")
    target_sentences: int = _f(40000, "target sentences (95% train)")
    parallel_pairs: int = _f(500, "test translation pairs (retrieval)")
    parallel_dev: int = _f(300, "dev translation pairs")
    task_train: int = _f(8000, "source task training examples")
    task_dev: int = _f(600, "target task dev examples: every 'best' is chosen on these")
    # 4000 reads an accuracy near 88% to +-1.0 point (95%); +-0.5 would take about 16000, and scoring costs
    # 0.5 ms per example and task model on one CPU thread at every mark (benchmarks/RESULTS.md)
    task_test: int = _f(4000, "source and target task test examples: every verdict figure (and its 95% interval)")
    task_mode: str = _f("one_clause", "how task pairs are made (mmadapt/synthetic/)",
                        choices=("one_clause", "first_clause", "controlled"))
    premise_negated: float = _f(0.5, "one_clause: share of negated premises (0.5: the label needs the "
                                "polarities of both sentences compared)")
    vocab_size: int = _f(0, "tokenizer size (0: every word form of the text, whole)")
    # model and pretraining
    hidden_size: int = _f(64, "hidden size (FFN 4x)")
    num_heads: int = _f(4, "attention heads (more heads: more chances of a head that matches a word with its "
                        "earlier mention, which the task needs)")
    num_layers: int = _f(4, "primary model depth L")
    mini_layers: int = _f(1, "mini-model depth k (MiniJoint head after layer k; MiniPost extracts k)")
    initializer_range: float = _f(0.1, "std of the initial weights", aliases=("--init_range",))
    sinusoidal_positions: float = _f(0.2, "position rows start as sinusoids of this amplitude (see ModelConfig)")
    max_seq_length: int = _f(64, "tokens per pretraining and step-2 block", aliases=("--seq_len",))
    global_batch_size: int = _f(32, "global batch (blocks or task examples)", aliases=("--batch",))
    pretrain_steps: int = _f(2000, "MiniJoint pretraining steps")
    pretrain_lr: float = _f(3e-3, "MiniJoint pretraining learning rate")
    mini_loss_weight: float = _f(2.0, "pretraining loss = primary MLM + weight x mini MLM (a stronger mini head "
                                 "keeps the mini-model's embeddings closer to the primary's)")
    forget_every: int = _f(0, "active forgetting in pretraining: fresh token embeddings every this many steps (0: off)")
    # MiniPost (step 1b)
    minipost: bool = _f(True, "also build a MiniPost mini-model and run step 2 through it")
    new_layers: int = _f(1, "MiniPost's new layers on top of the k extracted ones", aliases=("--minipost_new_layers",))
    minipost_steps: int = _f(400, "MiniPost training steps")
    minipost_lr: float = _f(3e-3, "MiniPost learning rate")
    # fine-tuning (step 3)
    finetune_seeds: list = _f([0, 1, 2], "one fine-tuned task model per seed; zero-shot figures are their mean",
                              item_type=int)
    finetune_epochs: float = _f(12.0, "passes over the task training examples")
    finetune_lr: float = _f(1e-3, "fine-tuning learning rate")
    finetune_min_dev: float = _f(0.8, "a task model under this source dev accuracy stayed at the plateau: "
                                 "restarted with a new seed")
    finetune_restarts: int = _f(3, "restarts at most, over all task models (each reported)")
    finetune_pooling: str = _f("mean", "task head input (see tasks.PairClassifier)", choices=("mean", "cls"))
    task_seq_len: int = _f(24, "tokens per task example (a one-clause pair fits in 20)")
    # step 2
    full_steps: int = _f(400, "step-2 budget: the standard path's steps; the others get the same FLOPs")
    eval_marks: int = _f(20, "evaluations per path after step 0, at the same FLOP marks (the saving is read to one mark)")
    full_lr: float = _f(1e-2, "step-2 learning rate of the standard path (chosen on dev)")
    mini_lr: float = _f(3e-3, "step-2 learning rate of the mini-model paths (chosen on dev)")
    reuse: bool = _f(False, "keep stages already complete in --output_dir (their summary.json exists)")


class Demo:
    """One instance: every stage of one seed, in ``out``."""

    def __init__(self, cfg: DemoConfig, out: str | None = None):
        self.cfg = cfg
        self.out = os.path.abspath(out or cfg.output_dir)
        self.dir = DemoDir(self.out)
        self.runs = Runs(self.out, cfg.nproc, reuse=cfg.reuse)
        self.timings = self.runs.seconds  # every stage's seconds, and the demo's own (data, analysis, total)

    def prepare_output(self) -> None:
        """Never delete what the demo did not make: a non-empty directory without the demo's marker is
        refused, and a rerun (without --reuse) replaces only the demo's own entries."""
        from .outdir import claim_run_dir, remove_own_entries

        claim_run_dir(self.out, DEMO_MARKER, "--output_dir")
        if not self.cfg.reuse:
            remove_own_entries(self.out, [e for e in os.listdir(self.out) if demo_made(e)])
        os.makedirs(self.dir.join(LOGS_DIR), exist_ok=True)

    def data(self) -> None:
        from .synthetic import SyntheticConfig, generate
        from .tokenizer import train_tokenizer, whole_word_vocab_size

        c = self.cfg
        generate(SyntheticConfig(
            seed=c.seed, lexicon_size=c.lexicon_size, word_order=c.word_order, source_sentences=c.source_sentences,
            target_sentences=c.target_sentences, parallel_pairs=c.parallel_pairs, parallel_dev=c.parallel_dev,
            task_train=c.task_train, task_test=c.task_test, task_dev=c.task_dev, task_mode=c.task_mode,
            premise_negated=c.premise_negated, document_length=c.document_length, entity_reuse=c.entity_reuse),
            self.dir.data.path)
        for side in ("source", "target"):
            text = [self.dir.data.text(side, "train")]
            size = c.vocab_size or whole_word_vocab_size(text)
            train_tokenizer(text, size, self.dir.tokenizer(side), seed=c.seed, whole_words=True)

    def common(self) -> dict:
        c = self.cfg
        return {"deepspeed_config": c.deepspeed_config, "max_seq_length": c.max_seq_length,
                "global_batch_size": c.global_batch_size, "seed": c.seed}

    def pretrain_call(self) -> StageCall:
        c = self.cfg
        return self.runs.call(DemoDir.PRETRAIN, "minijoint", {
            **self.common(), "model": "tiny", "hidden_size": c.hidden_size, "num_layers": c.num_layers,
            "num_heads": c.num_heads, "intermediate_size": 4 * c.hidden_size, "mini_layers": c.mini_layers,
            "initializer_range": c.initializer_range, "sinusoidal_positions": c.sinusoidal_positions,
            "hidden_dropout": 0.0, "attention_dropout": 0.0, "train_files": [self.dir.data.text("source", "train")],
            "tokenizer": self.dir.tokenizer("source"), "cache_dir": self.dir.cache, "max_steps": c.pretrain_steps,
            "lr": c.pretrain_lr, "mini_loss_weight": c.mini_loss_weight, "forget_every": c.forget_every,
            "warmup_steps": max(1, c.pretrain_steps // 20), "log_every": 50}, where="mmadapt demo")

    def minipost(self) -> None:
        c = self.cfg
        self.runs.stage(DemoDir.MINIPOST, "minipost", {
            **self.common(), "model": self.dir.pretrain.hf, "extract_layers": c.mini_layers,
            "new_layers": c.new_layers, "train_files": [self.dir.data.text("source", "train")],
            "cache_dir": self.dir.cache, "max_steps": c.minipost_steps, "lr": c.minipost_lr,
            "warmup_steps": max(1, c.minipost_steps // 20), "log_every": 50}, where="mmadapt demo")

    def finetune(self) -> list:
        """One task model per --finetune_seeds. Fine-tuning a small model on this task now and then stays at
        a plateau (about 65%, stuck on the same-subject check); as BERT's authors did for unstable
        fine-tuning, such a run is restarted with the next unused seed when its *source dev* accuracy is
        under --finetune_min_dev, at most --finetune_restarts times. Every attempt is reported."""
        from .artifacts import load_finetuned
        from .tasks import load_examples, score

        c = self.cfg
        dirs, self.finetune_attempts = [], []
        spare = iter(range(max(c.finetune_seeds) + 1, max(c.finetune_seeds) + 1 + c.finetune_restarts))
        for seed in c.finetune_seeds:
            while True:
                out = self.runs.stage(DemoDir.finetune_name(seed), "finetune", {
                    **self.common(), "max_seq_length": c.task_seq_len, "seed": seed, "task": "xnli",
                    "model": self.dir.pretrain.hf,
                    "train_files": [self.dir.data.task("source", "train")],
                    "eval_files": [self.dir.data.task("source", "test")], "epochs": c.finetune_epochs,
                    "lr": c.finetune_lr, "warmup_steps": 20, "log_every": 50, "pooling": c.finetune_pooling,
                    "dropout": 0.0}, where="mmadapt demo")
                spec, model, tok, meta = load_finetuned(out)
                dev = score(spec, model, tok, load_examples(spec, self.dir.data.task("source", "dev")),
                            meta["max_seq_length"])["accuracy"]
                kept = dev >= c.finetune_min_dev
                self.finetune_attempts.append({"seed": seed, "source_dev_accuracy": dev, "kept": kept})
                if kept:
                    break
                replacement = next(spare, None)
                if replacement is None:
                    print(f"fine-tuning seed {seed}: source dev accuracy {dev:.3f} < {c.finetune_min_dev}, no "
                          "restart left: kept", flush=True)
                    self.finetune_attempts[-1]["kept"] = True
                    break
                print(f"fine-tuning seed {seed}: source dev accuracy {dev:.3f} < {c.finetune_min_dev}: restarted "
                      f"with seed {replacement}", flush=True)
                seed = replacement
            dirs.append(out)
        return dirs

    def paths(self) -> tuple:
        return PATHS if self.cfg.minipost else PATHS[:2]

    def step2_plan(self) -> dict:
        """Per path: (steps, steps between evaluations, FLOPs per step) for the same FLOP budget."""
        from .budget import step2_plan

        c = self.cfg
        depths = {"full": None, "mini": "mini", "minipost": c.mini_layers + c.new_layers}
        return step2_plan(self.dir.pretrain.hf, self.dir.tokenizer("target"), [self.dir.data.text("target", "train")],
                          self.dir.cache, c.max_seq_length, c.global_batch_size, c.full_steps, c.eval_marks,
                          {p: depths[p] for p in self.paths()})

    def adapt(self, task_dirs: list, plan: dict) -> None:
        c = self.cfg
        for path in self.paths():
            steps, every, _ = plan[path]
            extra = {"mini_model": self.dir.minipost.path} if path == "minipost" else {}
            pair = self.dir.data
            self.runs.stage(DemoDir.step2_name(path), "adapt", {
                **self.common(), **extra, "model": self.dir.pretrain.hf,
                "through": "full" if path == "full" else "mini", "tokenizer": self.dir.tokenizer("target"),
                "train_files": [pair.text("target", "train")],
                "eval_files": [pair.text("target", "test")], "eval_blocks": 32,
                "parallel_file": pair.parallel("test"),
                "parallel_dev_file": pair.parallel("dev"), "parallel_limit": c.parallel_pairs,
                "task_models": task_dirs,
                "task_eval_file": pair.task("target", "test"),
                "task_dev_file": pair.task("target", "dev"), "select_by": "zero_shot_accuracy",
                "max_steps": steps, "eval_every": every, "lr": c.full_lr if path == "full" else c.mini_lr,
                "warmup_steps": max(1, steps // 20), "weight_decay": 0.0, "cache_dir": self.dir.cache,
                "log_every": every}, where="mmadapt demo")

    def run(self) -> dict:
        from .analysis import analyse
        from .report import write_demo_report

        self.prepare_output()
        t0 = time.perf_counter()
        print(f"mmadapt demo (seed {self.cfg.seed}) -> {self.out}", flush=True)
        if not (self.cfg.reuse and has_tokenizer(self.dir.tokenizer("target"))):
            self.data()
        self.timings["data"] = time.perf_counter() - t0
        self.runs.run(self.pretrain_call())
        if self.cfg.minipost:
            self.minipost()
        task_dirs = self.finetune()
        plan = self.step2_plan()
        print("step 2 budget: " + ", ".join(f"{p} {plan[p][0]} steps" for p in self.paths()), flush=True)
        self.adapt(task_dirs, plan)
        t1 = time.perf_counter()
        analysis = analyse(self.out, task_dirs, self.paths(), self.cfg.seed)
        self.timings["analysis"] = time.perf_counter() - t1
        self.timings["total"] = time.perf_counter() - t0
        return write_demo_report(self.out, dataclasses.asdict(self.cfg), self.timings, task_dirs, self.paths(),
                                 analysis, self.finetune_attempts)


def check(cfg: DemoConfig) -> None:
    """Flags that would otherwise fail only after minutes of earlier stages (or with a traceback)."""
    from .outdir import check_claimable

    if cfg.num_heads < 1 or cfg.hidden_size % cfg.num_heads:
        raise ConfigError(f"--hidden_size {cfg.hidden_size} is not divisible by --num_heads {cfg.num_heads}; fix: "
                          "choose a head count that divides it")
    if cfg.mini_layers < 1 or cfg.mini_layers >= cfg.num_layers:
        raise ConfigError(f"--mini_layers {cfg.mini_layers} is outside 1..{cfg.num_layers - 1}; fix: pick one")
    if cfg.eval_marks < 2 or cfg.full_steps < cfg.eval_marks:  # the verdict reads the standard's last two marks
        raise ConfigError(f"--eval_marks {cfg.eval_marks} with --full_steps {cfg.full_steps}: need 2 <= "
                          "eval_marks <= full_steps; fix: raise --full_steps or lower --eval_marks")
    if not 0.0 <= cfg.premise_negated <= 1.0:
        raise ConfigError(f"--premise_negated {cfg.premise_negated}: not a probability; fix: give a value in 0..1")
    if cfg.instances < 1:
        raise ConfigError(f"--instances {cfg.instances}: must be >= 1; fix: give a positive count")
    if not cfg.finetune_seeds:
        raise ConfigError("--finetune_seeds is empty; fix: give at least one seed")
    if cfg.minipost and cfg.new_layers < 1:
        raise ConfigError(f"--new_layers {cfg.new_layers}: must be >= 1; fix: give one or "
                          "more, or pass --no_minipost")
    from .synthetic import SyntheticConfig, check_config

    check_config(SyntheticConfig(seed=cfg.seed, lexicon_size=cfg.lexicon_size, word_order=cfg.word_order,
                                 task_mode=cfg.task_mode, premise_negated=cfg.premise_negated,
                                 document_length=cfg.document_length, entity_reuse=cfg.entity_reuse,
                                 source_sentences=cfg.source_sentences, target_sentences=cfg.target_sentences,
                                 parallel_pairs=cfg.parallel_pairs, parallel_dev=cfg.parallel_dev,
                                 task_train=cfg.task_train, task_dev=cfg.task_dev, task_test=cfg.task_test))
    check_claimable(os.path.abspath(cfg.output_dir), DEMO_MARKER, "--output_dir")
    Demo(cfg).pretrain_call()  # the first stage's settings, parsed as it will parse them (the others follow it)


def run(cfg: DemoConfig) -> dict:
    """One instance in --output_dir, or several in its seed-S/ directories plus the instances report."""
    if cfg.instances == 1:
        return Demo(cfg).run()
    from .outdir import claim_run_dir
    from .report import write_instances_report

    out = os.path.abspath(cfg.output_dir)
    claim_run_dir(out, DEMO_MARKER, "--output_dir")
    reports = []
    for seed in range(cfg.seed, cfg.seed + cfg.instances):
        one = dataclasses.replace(cfg, seed=seed, instances=1)
        reports.append(Demo(one, DemoDir(out).join(DemoDir.instance_name(seed))).run())
        print(reports[-1]["summary_text"], flush=True)
    return write_instances_report(out, dataclasses.asdict(cfg), reports)


def parser():
    from .config import ArgumentParser, add_dataclass_args

    p = ArgumentParser(prog="mmadapt demo", description=__doc__.split("\n\n")[0],
                                epilog="Every stage is also a launcher of its own; see README.md.")
    add_dataclass_args(p, DemoConfig, "demo")
    return p


def main(argv=None) -> int:
    try:
        cfg = DemoConfig(**vars(parser().parse_args(argv)))
    except SystemExit as exc:  # --help, or a bad flag already said in one line
        return exc.code

    def job() -> None:
        check(cfg)
        print(run(cfg)["summary_text"], flush=True)

    return exit_status(job)


if __name__ == "__main__":
    sys.exit(main())
