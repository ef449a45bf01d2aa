"""`mmadapt demo`: mini-model adaptation against the standard approach on the built-in bilingual benchmark.

Every stage is a real launcher run on ``--nproc`` ranks through the ``deepspeed`` launcher:

1. generate a source and a target language (mmadapt/synthetic.py) and train both tokenizers;
2. MiniJoint pretraining on the source (primary head + mini head after layer k);
3. fine-tune the primary model on the source task, embeddings frozen, once per ``--finetune_seeds``;
4. step 2 through the full model and through the mini-model with the *same FLOP budget* (the mini
   path takes proportionally more steps), evaluating the primary model with the current embeddings at
   the same FLOP marks: target MLM loss, retrieval on parallel pairs, zero-shot task accuracy (mean
   over the fine-tuned models);
5. the report: ``report.md``, ``report.json`` and PNG plots in ``--output``.

The verdict is downstream accuracy against step-2 FLOPs; the target MLM loss, the very objective of
the standard path, is shown as a diagnostic.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from dataclasses import dataclass, field

from .errors import ConfigError, exit_status

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO_MARKER = ".mmadapt-demo"
DEMO_ENTRIES = ("data", "tok-source", "tok-target", "pretrain", "logs", "cache", "report.md", "report.json",
                "zero_shot_vs_flops.png", "retrieval_vs_flops.png", "mlm_loss_vs_flops.png")


def demo_made(entry: str) -> bool:
    """An entry of --output that the demo writes (and so may replace)."""
    return entry in DEMO_ENTRIES or entry.startswith(("finetune-", "step2-"))


@dataclass
class DemoConfig:
    output: str = "runs/demo"
    seed: int = 0
    nproc: int = 2
    # Data parallel (ZeRO stage 0): a model of 250k parameters gains nothing from partitioning, and on
    # CPU ranks ZeRO-3's per-layer gathers make each step about 2.5x slower (--deepspeed_config
    # ds_configs/zero3_cpu.json runs the same demo under ZeRO-3).
    deepspeed_config: str = os.path.join(REPO, "ds_configs", "dp_cpu.json")
    # data
    lexicon_size: int = 40
    source_sentences: int = 40000
    target_sentences: int = 40000
    parallel_pairs: int = 500
    task_train: int = 2400
    task_test: int = 900
    task_mode: str = "one_clause"  # see mmadapt/synthetic.py: Sampler.one_clause_pair
    premise_negated: float = 0.0  # affirmative premises: see SyntheticConfig.premise_negated
    vocab_size: int = 300
    # Whole-word vocabularies (tokenizer.whole_word_vocab) by default: the two languages' words correspond
    # one to one, and sentencepiece would split them differently on each side. --subword_tokens: unigram.
    subword_tokens: bool = False
    # model and pretraining
    hidden_size: int = 64
    num_layers: int = 4
    mini_layers: int = 1
    init_range: float = 0.02  # std of the initial weights
    sinusoidal_positions: float = 0.1  # position rows start as sinusoids (see ModelConfig): no plateau
    seq_len: int = 64
    pretrain_steps: int = 1200
    pretrain_lr: float = 2e-3
    pretrain_mlm_probability: float = 0.15  # share of tokens predicted in pretraining (step 2 keeps 0.15)
    batch: int = 32
    # fine-tuning
    finetune_seeds: list = field(default_factory=lambda: [0, 1, 2])
    finetune_epochs: float = 6.0
    finetune_lr: float = 3e-4
    finetune_pooling: str = "mean"  # see tasks.PairClassifier
    task_seq_len: int = 32  # a one-clause premise and hypothesis fit in 24 tokens
    # step 2
    full_steps: int = 300
    step2_lr: float = 5e-3
    eval_marks: int = 4
    reuse: bool = False  # keep stages already complete in --output (their summary.json exists)


class Demo:
    def __init__(self, cfg: DemoConfig):
        self.cfg = cfg
        self.out = os.path.abspath(cfg.output)
        self.timings: dict = {}

    def prepare_output(self) -> None:
        """Never delete what the demo did not make: a non-empty directory without the demo's marker is
        refused, and a rerun (without --reuse) replaces only the demo's own entries."""
        from .outdir import claim_run_dir, remove_own_entries

        claim_run_dir(self.out, DEMO_MARKER)
        if not self.cfg.reuse:
            remove_own_entries(self.out, [e for e in os.listdir(self.out) if demo_made(e)])
        os.makedirs(self.path("logs"), exist_ok=True)

    def path(self, *parts) -> str:
        return os.path.join(self.out, *parts)

    def launch(self, name: str, script: str, args: list) -> None:
        """One stage on cfg.nproc ranks; with --reuse, skipped when its output is already complete."""
        from .launch import run_stage

        seconds = run_stage(self.out, name, script, args, self.cfg.nproc, reuse=self.cfg.reuse)
        if seconds is not None:
            self.timings[name] = seconds

    def data(self) -> None:
        from .synthetic import SyntheticConfig, generate
        from .tokenizer import train_tokenizer

        c = self.cfg
        generate(SyntheticConfig(seed=c.seed, lexicon_size=c.lexicon_size, source_sentences=c.source_sentences,
                                 target_sentences=c.target_sentences, parallel_pairs=c.parallel_pairs,
                                 task_train=c.task_train, task_test=c.task_test, task_mode=c.task_mode,
                                 premise_negated=c.premise_negated),
                 self.path("data"))
        for side in ("source", "target"):
            train_tokenizer([self.path("data", f"{side}.train.txt")], c.vocab_size, self.path(f"tok-{side}"),
                            seed=c.seed, whole_words=not c.subword_tokens)

    def common(self) -> list:
        return ["--deepspeed_config", self.cfg.deepspeed_config, "--max_seq_length", self.cfg.seq_len,
                "--global_batch_size", self.cfg.batch, "--seed", self.cfg.seed]

    def pretrain(self) -> None:
        c = self.cfg
        self.launch("pretrain", "minijoint.py", self.common() + [
            "--model", "tiny", "--hidden_size", c.hidden_size, "--num_layers", c.num_layers,
            "--num_heads", max(1, c.hidden_size // 32), "--intermediate_size", 4 * c.hidden_size,
            "--mini_layers", c.mini_layers, "--initializer_range", c.init_range,
            "--sinusoidal_positions", c.sinusoidal_positions,
            "--hidden_dropout", 0.0, "--attention_dropout", 0.0,
            "--train_files", self.path("data", "source.train.txt"), "--tokenizer", self.path("tok-source"),
            "--output_dir", self.path("pretrain"), "--cache_dir", self.path("cache"),
            "--max_steps", c.pretrain_steps, "--lr", c.pretrain_lr,
            "--mlm_probability", c.pretrain_mlm_probability,
            "--warmup_steps", max(1, c.pretrain_steps // 20), "--log_every", 50])

    def finetune(self) -> list:
        dirs = []
        for seed in self.cfg.finetune_seeds:
            out = self.path(f"finetune-{seed}")
            args = self.common() + ["--task", "xnli", "--model", self.path("pretrain", "hf"),
                                    "--train_file", self.path("data", "task.source.train.jsonl"),
                                    "--eval_file", self.path("data", "task.source.test.jsonl"),
                                    "--epochs", self.cfg.finetune_epochs, "--lr", self.cfg.finetune_lr,
                                    "--warmup_steps", 10, "--output_dir", out, "--log_every", 20,
                                    "--pooling", self.cfg.finetune_pooling, "--dropout", 0.0]
            args[args.index("--seed") + 1] = seed
            args[args.index("--max_seq_length") + 1] = self.cfg.task_seq_len
            self.launch(f"finetune-{seed}", "finetune.py", args)
            dirs.append(out)
        return dirs

    def step2_steps(self) -> dict:
        """Steps per path for the same FLOP budget, from the analytic per-step FLOPs."""
        from .flops import adapt_step_flops
        from .hf_io import pretrained_model_config
        from .tokenizer import load_tokenizer

        cfg = pretrained_model_config(self.path("pretrain", "hf"))
        cfg = dataclasses.replace(cfg, vocab_size=len(load_tokenizer(self.path("tok-target"))))
        tokens_predicted = self.cfg.batch * self.cfg.seq_len * 0.15
        per_step = {p: adapt_step_flops(cfg, self.cfg.seq_len, self.cfg.batch, tokens_predicted, p).total
                    for p in ("full", "mini")}
        ratio = per_step["full"] / per_step["mini"]
        # The same budget (to half a mini step per mark) and evaluations at the same FLOP marks: the full
        # path evaluates every `every` steps, the mini path every `every * ratio` (rounded) steps.
        every = max(1, self.cfg.full_steps // self.cfg.eval_marks)
        mini_every = max(1, round(every * ratio))
        marks = self.cfg.eval_marks
        return {"full": (every * marks, every), "mini": (mini_every * marks, mini_every), "ratio": ratio}

    def adapt(self, task_dirs: list, steps: dict) -> None:
        for through in ("full", "mini"):
            n, every = steps[through]
            self.launch(f"step2-{through}", "adapt.py", self.common() + [
                "--model", self.path("pretrain", "hf"), "--through", through,
                "--tokenizer", self.path("tok-target"), "--train_files", self.path("data", "target.train.txt"),
                "--eval_files", self.path("data", "target.test.txt"), "--eval_blocks", 32,
                "--parallel_file", self.path("data", "parallel.tsv"),
                "--task_models", *task_dirs, "--task_eval_file", self.path("data", "task.target.test.jsonl"),
                "--select_by", "retrieval_top1", "--max_steps", n, "--eval_every", every,
                "--lr", self.cfg.step2_lr, "--warmup_steps", max(1, n // 20), "--weight_decay", 0.0,
                "--output_dir", self.path(f"step2-{through}"), "--cache_dir", self.path("cache"),
                "--log_every", max(1, every // 2)])

    def run(self) -> dict:
        from .report import write_demo_report

        self.prepare_output()
        t0 = time.perf_counter()
        print(f"mmadapt demo -> {self.out}", flush=True)
        if not (self.cfg.reuse and os.path.isfile(self.path("tok-target", "tokenizer.json"))):
            self.data()
        self.timings["data"] = time.perf_counter() - t0
        self.pretrain()
        task_dirs = self.finetune()
        steps = self.step2_steps()
        print(f"step 2 budget: full {steps['full'][0]} steps, mini {steps['mini'][0]} steps "
              f"(a mini step costs {steps['ratio']:.2f}x less)", flush=True)
        self.adapt(task_dirs, steps)
        self.timings["total"] = time.perf_counter() - t0
        return write_demo_report(self.out, dataclasses.asdict(self.cfg), self.timings, task_dirs)


def check(cfg: DemoConfig) -> None:
    """Flags that would otherwise fail only after minutes of earlier stages (or with a traceback)."""
    from .tasks import POOLINGS

    if cfg.mini_layers < 1 or cfg.mini_layers >= cfg.num_layers:
        raise ConfigError(f"--mini_layers {cfg.mini_layers} is outside 1..{cfg.num_layers - 1}; fix: pick one")
    if cfg.eval_marks < 1 or cfg.full_steps < cfg.eval_marks:
        raise ConfigError(f"--eval_marks {cfg.eval_marks} with --full_steps {cfg.full_steps}: need 1 <= "
                          "eval_marks <= full_steps; fix: raise --full_steps or lower --eval_marks")
    if cfg.finetune_pooling not in POOLINGS:
        raise ConfigError(f"--finetune_pooling {cfg.finetune_pooling!r}: not one of {', '.join(POOLINGS)}; "
                          "fix: pick one")
    if not 0.0 <= cfg.premise_negated <= 1.0:
        raise ConfigError(f"--premise_negated {cfg.premise_negated}: not a probability; fix: give a value in 0..1")
    from .outdir import check_claimable

    check_claimable(os.path.abspath(cfg.output), DEMO_MARKER)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="mmadapt demo", description=__doc__.split("\n\n")[0])
    for f in dataclasses.fields(DemoConfig):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        if isinstance(default, bool):
            parser.add_argument(f"--{f.name}", action="store_true")
        elif isinstance(default, list):
            parser.add_argument(f"--{f.name}", type=int, nargs="+", default=default)
        else:
            parser.add_argument(f"--{f.name}", type=type(default), default=default)
    cfg = DemoConfig(**vars(parser.parse_args(argv)))

    def job() -> None:
        check(cfg)
        print(Demo(cfg).run()["summary_text"], flush=True)

    return exit_status(job)


if __name__ == "__main__":
    sys.exit(main())
