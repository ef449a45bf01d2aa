#!/usr/bin/env bash
# The GPU check, one run of under 10 minutes on one GPU (bf16, ZeRO-3, FusedAdam, NCCL):
#   0. the GPU paths' tests (`pytest -m gpu`: tests/test_gpu.py, the MLQA span mask on the device);
#   1. xlmr-base and xlmr-large MiniJoint steps: tokens/s and MFU against the GPU's bf16 matmul peak
#      measured in the same job (benchmarks/scale.py, its GPU cases);
#   2. step 2 through the mini-model and the full model of xlmr-large: wall-clock against the FLOPs ratio;
#   3. the whole demo pipeline on tiny sizes under ZeRO-3 on the GPU: every stage, and step 2's shared
#      evaluation (retrieval, zero-shot) on the NCCL path.
# Usage: bash benchmarks/gpu_check.sh [OUTPUT_DIR]   (default benchmarks/results; GPU_CHECK_CPU=1 runs
# the same commands on 2 CPU ranks at small sizes, which is what the tests check without a GPU; that form
# also profiles one step and adds an XL case its 1 GiB memory guard must refuse, so one test covers the
# scale benchmark and this script with one set of launches)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-benchmarks/results}
py=${PYTHON:-.venv/bin/python}
mkdir -p "$out"
if [ "${GPU_CHECK_CPU:-0}" = 1 ]; then
  nproc=2; config=ds_configs/zero3_cpu.json; dtype=fp32; seq=32; batch=1
  sizes=(--preset xlmr-base=tiny --preset xlmr-large=tiny --preset xlmr-xl=small --mini_layers 1)
  extra=(--profile --memory_budget_gib 1.0); guarded=(step2-xlmr-xl-mini)
else
  nproc=1; config=ds_configs/zero3.json; dtype=bf16; seq=512; batch=8
  sizes=(); extra=(--memory_budget_gib 1000); guarded=()
fi
if [ "${GPU_CHECK_CPU:-0}" != 1 ]; then
  # the GPU paths' tests first: bf16 ZeRO-3 with FusedAdam on NCCL, optimizer offload, step 2, MLQA on the device
  "$py" -m pytest -q -m gpu tests/ 2>&1 | tee "$out/gpu_check_tests.txt"
fi
"$py" benchmarks/scale.py --output "$out" --name gpu_check --work "$(mktemp -d)/scale" --nproc "$nproc" --deepspeed_config "$config" \
  --dtype "$dtype" --seq_len "$seq" --batch "$batch" --steps 3 --peak_once "${extra[@]}" "${sizes[@]}" \
  --cases minijoint-xlmr-base minijoint-xlmr-large step2-xlmr-large-mini step2-xlmr-large-full ${guarded[@]+"${guarded[@]}"}
demo_dir=$(mktemp -d)/demo
"$py" -m mmadapt.cli demo --output_dir "$demo_dir" --nproc "$nproc" --deepspeed_config "$config" \
  --lexicon_size 40 --source_sentences 800 --target_sentences 800 --parallel_pairs 40 --parallel_dev 30 \
  --task_train 64 --task_dev 30 --task_test 24 --hidden_size 32 --num_layers 4 --mini_layers 1 --seq_len 48 \
  --pretrain_steps 6 --minipost_steps 4 --batch 8 --finetune_seeds 0 --finetune_epochs 1 --finetune_restarts 0 \
  --full_steps 10 --eval_marks 10
cp "$demo_dir/report.json" "$out/gpu_check_demo.json"
echo "gpu check: $out/gpu_check.md, $out/gpu_check_demo.json"
