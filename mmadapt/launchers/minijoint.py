"""MiniJoint pretraining launcher (step 1). See `python launchers/minijoint.py --help` (installed: `python -m mmadapt.launchers.minijoint --help`).

    deepspeed --num_gpus 2 launchers/minijoint.py --deepspeed_config ds_configs/zero3_cpu.json \
        --model tiny --train_files text.txt --tokenizer tok/ --output_dir runs/mj
"""

from mmadapt.engine import exit_process
from mmadapt.stages import main

if __name__ == "__main__":
    exit_process(main("minijoint"))
