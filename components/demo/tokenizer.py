"""Train the demo's byte-level BPE tokenizer (with a ChatML-style chat template) on the shipped corpus.

Usage:
    python -m components.demo.tokenizer --profile demo --prepared data/prepared --out-dir models/tokenizer

Stands in for the tokenizer a real user gets with a hub model. Trained on training-side text only (never
the test set). Byte-level, so any input, including text it never saw, still encodes.
"""

from __future__ import annotations

from pathlib import Path

from components.demo.generate import REPLIES, REPLY_SUFFIX
from components.io import load_jsonl, write_manifest
from components.tasks import ticket_triage as task

SPECIAL_TOKENS = ["<|pad|>", "<|im_start|>", "<|im_end|>"]
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def corpus(prepared: Path) -> list[str]:
    texts = [r["input"] for name in ("train", "val", "pool") for r in load_jsonl(prepared / f"{name}.jsonl")]
    # The prompt and answer formats are part of "the language" a real base model already knows.
    texts += [task.SYSTEM_PROMPT, task.AUGMENT_PROMPT] * 50
    for category, reply in REPLIES.items():
        for priority, suffix in REPLY_SUFFIX.items():
            texts += [task.format_output({"category": category, "priority": priority, "reply": reply + suffix})] * 20
    return texts


def run(vocab_size: int, *, prepared: Path, out_dir: Path) -> Path:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    bpe.train_from_iterator(corpus(prepared), trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
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


def main() -> None:
    import argparse

    from components.config import load_params

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default=None)
    parser.add_argument("--prepared", type=Path, required=True)
    parser.add_argument("--out-dir", type=Path, required=True)
    args = parser.parse_args()
    print(run(load_params(args.profile).demo.vocab_size, prepared=args.prepared, out_dir=args.out_dir))


if __name__ == "__main__":
    main()
