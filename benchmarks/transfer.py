"""Transfer benchmark on real text: the method's step 2 for a real target language, every path against FLOPs.

    .venv/bin/python benchmarks/transfer.py --output runs/transfer-de \
        --source_text ../shared/data/fortunes.en.train.txt ../shared/data/man.en.train.txt \
        --source_eval ../shared/data/fortunes.en.test.txt \
        --target_text ../shared/data/fortunes.de.train.txt ../shared/data/man.de.train.txt \
        --target_eval ../shared/data/fortunes.de.test.txt --parallel ../shared/data/parallel.en-de.tsv
    .venv/bin/python benchmarks/transfer.py --output runs/transfer-cipher --target cipher \
        --pretrained runs/transfer-de --source_eval ../shared/data/fortunes.en.test.txt

Stages, each a real launcher run on --nproc ranks (a stage already complete in --output is kept):

1. source tokenizer and MiniJoint pretraining on the source text (the primary model and its mini head);
   ``--pretrained RUN`` reuses another run's, so several targets share one pretraining;
2. MiniPost from that primary model (its embeddings and bottom --mini_layers layers frozen, new layers
   and head trained on the source text): the mini-model one would build for an existing checkpoint;
3. the target: a sentencepiece tokenizer on --target_text, or ``--target cipher``, the source text
   itself under a tokenizer whose piece ids are permuted, so that a perfect answer exists (the
   source embeddings, permuted) and retrieval shows whether the model is strong enough to transfer;
4. step 2 through the full model, the MiniJoint mini-model and the MiniPost mini-model with the same
   FLOP budget, evaluating the primary model with the current embeddings at matching FLOP marks:
   retrieval top-1 on the parallel pairs and the target MLM loss;
5. transfer.md / transfer.json and two PNG plots in --output: the curves, the FLOPs at which each path
   first reaches the standard path's final retrieval, and the pretraining sanity figures.

The paths go through the data in the same order; only their depth (and cost per step) differs.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from mmadapt.errors import ConfigError, exit_status  # noqa: E402

PATHS = ("full", "minijoint", "minipost")
LABELS = {"full": "standard (through the full model)", "minijoint": "mini-model (MiniJoint)",
          "minipost": "mini-model (MiniPost)"}


def parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--output", required=True, help="run directory (kept stages are reused)")
    p.add_argument("--source_text", nargs="+", default=[], help="source-language training text (.txt)")
    p.add_argument("--source_eval", nargs="+", default=[], help="held-out source text (cipher: its target)")
    p.add_argument("--target", choices=("text", "cipher"), default="text")
    p.add_argument("--target_text", nargs="+", default=[], help="target-language training text")
    p.add_argument("--target_eval", nargs="+", default=[], help="held-out target text (MLM loss)")
    p.add_argument("--parallel", nargs="+", default=[], help="source<TAB>target pairs (retrieval)")
    p.add_argument("--pretrained", help="reuse the tokenizer, pretraining and MiniPost of this earlier run")
    p.add_argument("--nproc", type=int, default=2)
    p.add_argument("--deepspeed_config", default=os.path.join(REPO, "ds_configs", "dp_cpu.json"))
    p.add_argument("--vocab_size", type=int, default=4000)
    p.add_argument("--hidden_size", type=int, default=128)
    p.add_argument("--num_layers", type=int, default=4)
    p.add_argument("--mini_layers", type=int, default=1)
    p.add_argument("--minipost_new_layers", type=int, default=1)
    p.add_argument("--seq_len", type=int, default=64)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--pretrain_steps", type=int, default=1500)
    p.add_argument("--pretrain_lr", type=float, default=1e-3)
    p.add_argument("--minipost_steps", type=int, default=300)
    p.add_argument("--full_steps", type=int, default=200, help="step 2 budget: the full path's steps")
    p.add_argument("--eval_marks", type=int, default=4)
    p.add_argument("--step2_lr", type=float, default=5e-3)
    p.add_argument("--parallel_limit", type=int, default=500)
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


class Transfer:
    def __init__(self, args: argparse.Namespace):
        self.a = args
        self.out = os.path.abspath(args.output)
        self.base = os.path.abspath(args.pretrained) if args.pretrained else self.out
        self.timings: dict = {}

    def path(self, *parts) -> str:
        return os.path.join(self.out, *parts)

    def launch(self, name: str, script: str, args: list) -> None:
        from mmadapt.launch import run_stage

        seconds = run_stage(self.out, name, script, args, self.a.nproc)
        if seconds is not None:
            self.timings[name] = seconds

    def common(self) -> list:
        a = self.a
        return ["--deepspeed_config", a.deepspeed_config, "--max_seq_length", a.seq_len,
                "--global_batch_size", a.batch, "--seed", a.seed, "--cache_dir", self.path("cache")]

    def check(self) -> None:
        a = self.a
        from mmadapt.data import check_text_file

        need = [("--source_eval", a.source_eval)]
        if not a.pretrained:
            need.append(("--source_text", a.source_text))
        if a.target == "text":
            need += [("--target_text", a.target_text), ("--target_eval", a.target_eval),
                     ("--parallel", a.parallel)]
        for flag, files in need:
            if not files:
                raise ConfigError(f"{flag} is missing; fix: pass one or more files")
            for f in files:
                check_text_file(f, None)
        if a.pretrained and not os.path.isfile(os.path.join(self.base, "pretrain", "summary.json")):
            raise ConfigError(f"--pretrained {a.pretrained}: no complete pretraining there; fix: point at an "
                              "earlier benchmarks/transfer.py --output")
        if a.eval_marks < 1 or a.full_steps < a.eval_marks:
            raise ConfigError(f"--eval_marks {a.eval_marks} with --full_steps {a.full_steps}: need 1 <= "
                              "eval_marks <= full_steps; fix: raise --full_steps or lower --eval_marks")
        if not 1 <= a.mini_layers < a.num_layers:
            raise ConfigError(f"--mini_layers {a.mini_layers} is outside 1..{a.num_layers - 1}; fix: pick one")

    # ------------------------------------------------------------------ source side (shareable)

    def source(self) -> None:
        a = self.a
        from mmadapt.tokenizer import train_tokenizer

        if a.pretrained:
            return
        if not os.path.isfile(self.path("tok-source", "tokenizer.json")):
            train_tokenizer(a.source_text, a.vocab_size, self.path("tok-source"), seed=a.seed)
        self.launch("pretrain", "minijoint.py", self.common() + [
            "--model", "tiny", "--hidden_size", a.hidden_size, "--num_layers", a.num_layers,
            "--num_heads", max(1, a.hidden_size // 32), "--intermediate_size", 4 * a.hidden_size,
            "--mini_layers", a.mini_layers, "--sinusoidal_positions", 0.1, "--hidden_dropout", 0.0,
            "--attention_dropout", 0.0, "--train_files", *a.source_text, "--tokenizer", self.path("tok-source"),
            "--output_dir", self.path("pretrain"), "--max_steps", a.pretrain_steps, "--lr", a.pretrain_lr,
            "--warmup_steps", max(1, a.pretrain_steps // 20), "--log_every", 50])
        self.launch("minipost", "minipost.py", self.common() + [
            "--from_pretrained", self.path("pretrain", "hf"), "--extract_layers", a.mini_layers,
            "--new_layers", a.minipost_new_layers, "--train_files", *a.source_text,
            "--tokenizer", self.path("tok-source"), "--output_dir", self.path("minipost"),
            "--max_steps", a.minipost_steps, "--lr", a.pretrain_lr, "--log_every", 50])

    # ------------------------------------------------------------------ target side

    def target(self) -> dict:
        """Tokenizer, training text, held-out text and parallel pairs of the target."""
        a = self.a
        from mmadapt.tokenizer import permuted_tokenizer, train_tokenizer

        if a.target == "text":
            if not os.path.isfile(self.path("tok-target", "tokenizer.json")):
                train_tokenizer(a.target_text, a.vocab_size, self.path("tok-target"), seed=a.seed)
            return {"tok": self.path("tok-target"), "train": a.target_text, "eval": a.target_eval,
                    "parallel": a.parallel}
        permuted_tokenizer(os.path.join(self.base, "tok-source"), self.path("tok-target"), a.seed)
        pairs = self.path("cipher.parallel.tsv")
        with open(pairs, "w", encoding="utf-8") as out:
            n = 0
            for f in a.source_eval:
                for line in open(f, encoding="utf-8"):
                    line = " ".join(line.split())
                    if line and n < a.parallel_limit:
                        out.write(f"{line}\t{line}\n")
                        n += 1
        return {"tok": self.path("tok-target"), "train": a.source_text or self.base_source_text(),
                "eval": a.source_eval, "parallel": [pairs]}

    def base_source_text(self) -> list:
        with open(os.path.join(self.base, "pretrain", "run_config.json"), encoding="utf-8") as fh:
            return json.load(fh)["data"]["train_files"]

    def step2_steps(self) -> dict:
        """Steps and evaluation interval per path for one FLOP budget (the full path's --full_steps)."""
        from mmadapt.flops import step_flops
        from mmadapt.hf_io import pretrained_model_config
        from mmadapt.tokenizer import load_tokenizer

        a = self.a
        cfg = pretrained_model_config(os.path.join(self.base, "pretrain", "hf"))
        cfg = dataclasses.replace(cfg, vocab_size=len(load_tokenizer(self.path("tok-target"))))
        depth = {"full": cfg.num_layers, "minijoint": cfg.mini_layers,
                 "minipost": cfg.mini_layers + a.minipost_new_layers}
        per_step = {p: step_flops(cfg, a.seq_len, a.batch, a.batch * a.seq_len * 0.15, d, [d], set(), True,
                                  False).total for p, d in depth.items()}
        every = max(1, a.full_steps // a.eval_marks)
        plan = {}
        for p in PATHS:
            each = max(1, round(every * per_step["full"] / per_step[p]))
            plan[p] = (each * a.eval_marks, each)
        return plan

    def step2(self, tgt: dict, plan: dict) -> None:
        a = self.a
        for p in PATHS:
            steps, every = plan[p]
            extra = {"full": ["--through", "full"], "minijoint": ["--through", "mini"],
                     "minipost": ["--through", "mini", "--mini_model", os.path.join(self.base, "minipost")]}[p]
            self.launch(f"step2-{p}", "adapt.py", self.common() + extra + [
                "--model", os.path.join(self.base, "pretrain", "hf"), "--tokenizer", tgt["tok"],
                "--train_files", *tgt["train"], "--eval_files", *tgt["eval"], "--eval_blocks", 64,
                "--parallel_file", tgt["parallel"][0], "--parallel_limit", a.parallel_limit,
                "--select_by", "retrieval_top1", "--max_steps", steps, "--eval_every", every,
                "--lr", a.step2_lr, "--warmup_steps", max(1, steps // 20), "--weight_decay", 0.0,
                "--output_dir", self.path(f"step2-{p}"), "--log_every", max(1, every // 2)])

    def run(self) -> dict:
        from mmadapt.outdir import claim_run_dir

        self.check()
        claim_run_dir(self.out, ".mmadapt-transfer")  # stages replace only their own directories in it
        os.makedirs(self.path("logs"), exist_ok=True)
        t0 = time.perf_counter()
        self.source()
        tgt = self.target()
        if len(tgt["parallel"]) > 1:
            merged = self.path("parallel.tsv")
            with open(merged, "w", encoding="utf-8") as out:
                for f in tgt["parallel"]:
                    out.write(open(f, encoding="utf-8").read())
            tgt["parallel"] = [merged]
        plan = self.step2_steps()
        print("step 2 budget: " + ", ".join(f"{p} {plan[p][0]} steps" for p in PATHS), flush=True)
        self.step2(tgt, plan)
        oracle = None
        if self.a.target == "cipher":
            oracle = cipher_oracle_retrieval(os.path.join(self.base, "pretrain", "hf"),
                                             os.path.join(self.base, "tok-source"), tgt["tok"], tgt["parallel"][0],
                                             self.a.parallel_limit)
        self.timings["total"] = time.perf_counter() - t0
        return write_report(self.out, self.base, vars(self.a), self.timings, oracle)


def cipher_oracle_retrieval(model_dir: str, source_tok_dir: str, cipher_tok_dir: str, pairs: str,
                            limit: int) -> float:
    """Retrieval of the primary model given the perfect answer: its own rows, permuted as the cipher's ids.

    Checks the measure and the model together: the cipher side then computes exactly what the source
    side does, so anything under 100% is a bug, not a weak model."""
    import torch

    from mmadapt.evaluators import Retrieval
    from mmadapt.hf_io import load_pretrained_state_dict, pretrained_model_config
    from mmadapt.model import MiniJointForMaskedLM
    from mmadapt.tokenizer import load_tokenizer

    cfg = dataclasses.replace(pretrained_model_config(model_dir), mini_head=False, mini_layers=None)
    model = MiniJointForMaskedLM(cfg).eval()
    model.load_state_dict({k: v for k, v in load_pretrained_state_dict(model_dir).items()
                           if not k.startswith("mini_head.")}, strict=False)
    source_tok, cipher_tok = load_tokenizer(source_tok_dir), load_tokenizer(cipher_tok_dir)
    measure = Retrieval(model, source_tok, cipher_tok, pairs, limit)
    source_vocab = source_tok.get_vocab()
    rows = model.roberta.embeddings.word_embeddings.weight.detach().clone()
    permuted = rows.clone()
    for piece, cipher_id in cipher_tok.get_vocab().items():
        permuted[cipher_id] = rows[source_vocab[piece]]
    with torch.no_grad():
        model.roberta.embeddings.word_embeddings.weight.copy_(permuted)
    return measure(model)["retrieval_top1"]


def write_report(out: str, base: str, config: dict, timings: dict, oracle=None) -> dict:
    from mmadapt.report import first_reaching, plot_curves, read_jsonl

    pre = json.load(open(os.path.join(base, "pretrain", "summary.json")))
    curves = {p: read_jsonl(os.path.join(out, f"step2-{p}", "eval.jsonl")) for p in PATHS}
    summaries = {p: json.load(open(os.path.join(out, f"step2-{p}", "summary.json"))) for p in PATHS}
    standard_final = curves["full"][-1]["retrieval_top1"]
    reach = {p: first_reaching([r for r in curves[p] if r["flops"] > 0], "retrieval_top1", standard_final)
             for p in PATHS}
    chance = 1 / max(1, config["parallel_limit"])
    plot_curves(curves, "retrieval_top1", "retrieval top-1 (primary model, centred mean-pool)",
                os.path.join(out, "retrieval_vs_flops.png"), chance, labels=LABELS)
    plot_curves(curves, "eval_loss", "primary target MLM loss (diagnostic)",
                os.path.join(out, "mlm_loss_vs_flops.png"), labels=LABELS)
    sanity = {"unigram_entropy": pre["unigram_entropy"], "primary_loss": pre["final_loss"],
              "mini_loss": pre["final_mini_loss"]}
    rows = []
    for p in PATHS:
        c, s = curves[p], summaries[p]
        rows.append(f"| {LABELS[p]} | {s['steps']} | {s['flops']:.3g} | {s['wall_clock_s']:.1f} | "
                    f"{100 * c[-1]['retrieval_top1']:.1f} | {100 * max(r['retrieval_top1'] for r in c):.1f} | "
                    f"{c[-1]['eval_loss']:.3f} | {'never' if reach[p] is None else f'{reach[p]:.3g}'} |")
    lines = [f"# Transfer benchmark: target {config['target']}", "",
             f"Model {config['num_layers']} layers x {config['hidden_size']}, mini-model layers 1..{config['mini_layers']} "
             f"(MiniPost: those + {config['minipost_new_layers']} new), {config['nproc']} ranks.", "",
             "| path | steps | step-2 FLOPs | wall (s) | retrieval final % | best % | target MLM loss | "
             "FLOPs to reach the standard final retrieval |", "|---|---|---|---|---|---|---|---|", *rows, "",
             f"Retrieval chance: {100 * chance:.2f}%. Step 0 (random embeddings): retrieval "
             f"{100 * curves['full'][0]['retrieval_top1']:.1f}%, target loss {curves['full'][0]['eval_loss']:.3f}."
             + ("" if oracle is None else f" Cipher oracle (the source rows, permuted): retrieval "
                f"{100 * oracle:.1f}%."), "",
             f"Pretraining sanity: source unigram entropy {sanity['unigram_entropy']:.3f} nats, primary MLM loss "
             f"{sanity['primary_loss']:.3f}, mini {sanity['mini_loss']:.3f}.", "",
             "| path | TFLOP | retrieval % | target MLM loss |", "|---|---|---|---|",
             *[f"| {p} | {r['flops'] / 1e12:.3f} | {100 * r['retrieval_top1']:.1f} | {r['eval_loss']:.3f} |"
               for p in PATHS for r in curves[p]], "",
             "Plots: `retrieval_vs_flops.png`, `mlm_loss_vs_flops.png`.", "",
             "Wall-clock by stage (s): " + ", ".join(f"{k} {v:.0f}" for k, v in timings.items()), ""]
    with open(os.path.join(out, "transfer.md"), "w", encoding="utf-8") as fh:
        fh.write("\n".join(lines))
    report = {"config": config, "pretraining": sanity, "curves": curves, "reach_flops": reach,
              "cipher_oracle_retrieval": oracle,
              "standard_final_retrieval": standard_final, "timings": timings}
    with open(os.path.join(out, "transfer.json"), "w", encoding="utf-8") as fh:
        json.dump(report, fh, indent=2)
    print("\n".join(lines), flush=True)
    return report


def main(argv=None) -> int:
    args = parse(argv)
    return exit_status(lambda: Transfer(args).run())


if __name__ == "__main__":
    sys.exit(main())
