"""The ``mmadapt`` command: tokenizer training, environment info, export, demo data.

Training itself runs through the launchers (``deepspeed launchers/minijoint.py ...``) so that the
DeepSpeed launcher owns process placement; this command covers the single-process tools around it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from .errors import ConfigError


def cmd_tokenizer_train(args) -> None:
    from .tokenizer import train_tokenizer

    tok = train_tokenizer(args.input, args.vocab_size, args.output, args.text_field, seed=args.seed,
                          whole_words=args.whole_words)
    note = "" if len(tok) == args.vocab_size else \
        f" (asked for {args.vocab_size}: the text has fewer distinct pieces)"
    print(f"tokenizer: {len(tok)} tokens{note} -> {args.output}")


def cmd_info(args) -> None:
    import deepspeed
    import torch
    import transformers
    from deepspeed.accelerator import get_accelerator

    acc = get_accelerator()
    info = {
        "mmadapt": __import__("mmadapt").__version__,
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "deepspeed": deepspeed.__version__,
        "transformers": transformers.__version__,
        "accelerator": acc.device_name(),
        "communication_backend": acc.communication_backend_name(),
        "bf16_supported": bool(acc.is_bf16_supported()),
        "devices": acc.device_count() if acc.device_name() != "cpu" else 0,
        "cpu_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "deepspeed_ops": _ds_ops(),
    }
    print(json.dumps(info, indent=2))


def _ds_ops() -> dict:
    """Each DeepSpeed op this machine can build, and whether it is already built (JIT cache)."""
    from deepspeed.ops.op_builder import CPUAdamBuilder, FusedAdamBuilder
    from deepspeed.accelerator import get_accelerator

    out = {}
    for builder in (FusedAdamBuilder(), CPUAdamBuilder()):
        try:
            out[builder.name] = "compatible" if builder.is_compatible(verbose=False) else "incompatible"
        except Exception as exc:  # noqa: BLE001 - a broken toolchain is information here
            out[builder.name] = f"error: {exc}"
    out["accelerator_ops"] = get_accelerator().op_builder_dir()
    return out


def cmd_export(args) -> None:
    from . import engine as eng
    from .config import ModelConfig
    from .hf_io import export_hf

    run_cfg = os.path.join(args.run_dir, "run_config.json")
    if not os.path.isfile(run_cfg):
        raise ConfigError(f"{args.run_dir}: no run_config.json; fix: point at a training --output_dir")
    with open(run_cfg, encoding="utf-8") as fh:
        resolved = json.load(fh)
    ckpt = os.path.join(args.run_dir, "checkpoints")
    tag = args.tag or eng.latest_tag(ckpt)
    if tag is None or not os.path.isdir(os.path.join(ckpt, tag)):
        raise ConfigError(f"{ckpt}: no complete checkpoint {tag or ''}; fix: train first or pass --tag")
    sd = eng.consolidated_state_dict(ckpt, tag)
    out = export_hf(sd, ModelConfig(**resolved["model"]), args.output,
                    os.path.join(args.run_dir, "tokenizer"))
    print(f"exported {tag} -> {out}")


def cmd_demo_text(args) -> None:
    from .textgen import write_corpus

    n = write_corpus(args.output, args.sentences, args.seed)
    print(f"wrote {n} sentences -> {args.output}")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mmadapt", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)

    tok = sub.add_parser("tokenizer", help="tokenizer tools").add_subparsers(dest="action", required=True)
    tt = tok.add_parser("train", help="train a sentencepiece unigram tokenizer in XLM-R's layout")
    tt.add_argument("--input", nargs="+", required=True, help=".txt or .jsonl files")
    tt.add_argument("--vocab_size", type=int, required=True, help="final size, special tokens included")
    tt.add_argument("--whole_words", action="store_true",
                    help="whole words (most frequent first) plus single characters instead of sentencepiece "
                         "unigram pieces: for languages with few word forms, such as the synthetic benchmark")
    tt.add_argument("--output", required=True, help="directory to write the Hugging Face tokenizer to")
    tt.add_argument("--text_field", default="text", help="field holding the text in jsonl files")
    tt.add_argument("--seed", type=int, default=0)
    tt.set_defaults(func=cmd_tokenizer_train)

    info = sub.add_parser("info", help="versions, accelerator, DeepSpeed ops")
    info.set_defaults(func=cmd_info)

    ex = sub.add_parser("export", help="consolidate a run's checkpoint into a Hugging Face directory")
    ex.add_argument("--run_dir", required=True, help="a training --output_dir")
    ex.add_argument("--output", required=True)
    ex.add_argument("--tag", help="checkpoint tag (default: latest)")
    ex.set_defaults(func=cmd_export)

    sub.add_parser("demo", help="the main job: mini-model vs standard adaptation on the built-in "
                   "benchmark (`mmadapt demo --help`)", add_help=False)

    sub.add_parser("pipeline", help="steps 1-4 for several languages from one YAML "
                   "(`mmadapt pipeline --help`)", add_help=False)

    dt = sub.add_parser("demo-text", help="write the built-in generated text")
    dt.add_argument("--output", required=True)
    dt.add_argument("--sentences", type=int, default=20000)
    dt.add_argument("--seed", type=int, default=0)
    dt.set_defaults(func=cmd_demo_text)
    return p


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["demo"]:
        from .demo import main as demo_main
        return demo_main(argv[1:])
    if argv[:1] == ["pipeline"]:
        from .pipeline import main as pipeline_main
        return pipeline_main(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
