"""Step 1b launcher: MiniPost mini-model on top of a pretrained model.

    deepspeed --num_gpus 2 launchers/minipost.py --deepspeed_config ds_configs/zero3_cpu.json \
        --from_pretrained runs/mlm/hf --extract_layers 2 --new_layers 2 --train_files en.txt \
        --output_dir runs/minipost
"""

from mmadapt.engine import exit_process
from mmadapt.stages import main

if __name__ == "__main__":
    exit_process(main("minipost"))
