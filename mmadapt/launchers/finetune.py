"""Step 3 launcher: fine-tune on a source-language task with embeddings frozen.

    deepspeed --num_gpus 2 launchers/finetune.py --deepspeed_config ds_configs/zero3_cpu.json \
        --task xnli --model runs/mj/hf --train_file mnli.train.jsonl --eval_file xnli.en.test.jsonl \
        --output_dir runs/xnli-en
"""

from mmadapt.engine import exit_process
from mmadapt.stages import main

if __name__ == "__main__":
    exit_process(main("finetune"))
