"""Step 2 launcher: target-language embeddings through the mini-model or the full model.

    deepspeed --num_gpus 2 launchers/adapt.py --deepspeed_config ds_configs/zero3_cpu.json \
        --model runs/mj/hf --through mini --tokenizer tok-de/ --train_files de.txt \
        --eval_files de.test.txt --output_dir packs/de-mini
"""

from mmadapt.engine import exit_process
from mmadapt.stages import main

if __name__ == "__main__":
    exit_process(main("adapt"))
