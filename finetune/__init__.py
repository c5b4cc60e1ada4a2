"""`harness finetune`: LoRA / QLoRA fine-tuning on a task's own data, with checkpoints the harness evaluates.

config.py  the resolved settings (a frozen dataclass, validated in one place) and their flags
data.py    training rows -> the task's problems -> prompts formatted as the task formats them at
           evaluation time, the contamination guard, tokens with the prompt masked
train.py   model loading, trl's SFTTrainer, checkpoints with provenance, resume, Ctrl-C, --merge,
           --eval-task

Nothing heavy (torch, transformers, trl, peft) is imported until a fine-tune starts.
"""
