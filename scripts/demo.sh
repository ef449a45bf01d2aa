#!/usr/bin/env bash
# Short MiniJoint pretraining on built-in generated text, on NPROC ranks under ZeRO-3.
set -euo pipefail
out=${1:-runs/demo}
nproc=${2:-2}
venv=.venv/bin
mkdir -p "$out"
$venv/mmadapt demo-text --output "$out/text.txt" --sentences 20000
$venv/mmadapt tokenizer train --input "$out/text.txt" --vocab_size 300 --output "$out/tokenizer"
rm -rf "$out/minijoint"
$venv/deepspeed --num_gpus "$nproc" launchers/minijoint.py \
  --deepspeed_config ds_configs/zero3_cpu.json --model tiny --mini_layers 2 \
  --train_files "$out/text.txt" --tokenizer "$out/tokenizer" --output_dir "$out/minijoint" \
  --max_seq_length 64 --global_batch_size 32 --max_steps 300 --log_every 25 --lr 1e-3 \
  --cache_dir "$out/cache"
echo "metrics: $out/minijoint/metrics.jsonl  summary: $out/minijoint/summary.json  export: $out/minijoint/hf"
