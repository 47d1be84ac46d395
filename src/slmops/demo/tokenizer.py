"""Train the demo's byte-level BPE tokenizer (with a ChatML-style chat template) on the generated corpus.

Usage:
    slmops demo build --profile demo

Stands in for the tokenizer a real user gets with a hub model. Trained on training-side text only (the seed
and pool inputs, PII-masked, plus the task's prompts and the seed set's answers; never the test set).
Byte-level, so any input, including text it never saw, still encodes.
"""

from __future__ import annotations

from pathlib import Path

from slmops.demo.models import generated_rows, training_texts
from slmops.io import write_manifest
from slmops.tasks import Task

SPECIAL_TOKENS = ["<|pad|>", "<|im_start|>", "<|im_end|>"]
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def corpus(task: Task, raw_dir: Path) -> list[str]:
    texts = training_texts(task, raw_dir)
    # The prompt and answer formats are part of "the language" a real base model already knows.
    texts += [task.prompt_template_text()] * 50
    texts += [task.format_output(r["expected"]) for r in generated_rows(task, raw_dir, "seed")] * 3
    return texts


def train_bpe(vocab_size: int, texts: list[str], split=None):
    """A byte-level BPE trained on ``texts``; ``split``: a ``tokenizers`` pre-tokenizer applied before the
    byte-level one (the demo uses none; ``benchmarks/demo_tokens.py`` tries a script-boundary split)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    bpe = Tokenizer(models.BPE())
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.pre_tokenizer = byte_level if split is None else pre_tokenizers.Sequence([split, byte_level])
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        show_progress=False,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    bpe.train_from_iterator(texts, trainer)
    return bpe


def run(vocab_size: int, *, task: Task, raw_dir: Path, out_dir: Path) -> Path:
    from transformers import PreTrainedTokenizerFast

    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=train_bpe(vocab_size, corpus(task, raw_dir)),
        pad_token="<|pad|>",
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        model_max_length=512,
        padding_side="left",
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.save_pretrained(out_dir)
    write_manifest(out_dir, stage="tokenizer", vocab_size=len(tokenizer))
    return out_dir
