"""Step 4 launcher: zero-shot scores with a language pack swapped in.

    deepspeed --num_gpus 1 launchers/evaluate.py --task xnli --model runs/xnli-en \
        --language_pack packs/de-mini packs/de-full --eval_files xnli.de.test.jsonl xnli.de.test.jsonl \
        --split test --output_dir runs/eval-de
"""

from mmadapt.engine import exit_process
from mmadapt.stages import main

if __name__ == "__main__":
    exit_process(main("evaluate"))
