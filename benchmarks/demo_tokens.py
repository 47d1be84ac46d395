"""How many tokens the demo's tokenizer spends on each kind of training input, and on the hand-written dev set;
how often it splits the teacher's keywords where they begin and end.

Usage (after ``make demo``):
    .venv/bin/python -m benchmarks.demo_tokens            # reads ./demo; a few seconds
    .venv/bin/python -m benchmarks.demo_tokens --project path/to/project
    .venv/bin/python -m benchmarks.demo_tokens --script-split   # also a tokenizer split at kanji/kana boundaries

A tokenizer trained on one generator's text merges that generator's phrases into single tokens: its inputs
cost few tokens, and text in other words is split far finer. The figures show how far apart the generator's
rows (``gold``, ``teacher_label``), the teacher-written rows (``teacher_augment``) and hand-written text are.

Keywords: for every occurrence of a Japanese keyword of the demo teacher's lexicon in the training file, whether a
token starts where it starts and one ends where it ends (``aligned``), and how many different token sequences
cover each keyword (``tokenizations``). ``--script-split`` trains the same byte-level BPE (same corpus, same
vocabulary size) with kanji, hiragana and katakana runs pre-split, and prints the same figures and the mean
length of a whole training sequence (chat template, input and answer) for both.
The last line is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import defaultdict
from pathlib import Path

from slmops.io import load_jsonl

SCRIPT_RUNS = r"[\p{Han}々〆ヵヶ]+|[\p{Hiragana}ー]+|[\p{Katakana}ー]+"


def keyword_figures(tokenizer, inputs: list[str]) -> dict[str, float]:
    """Share of keyword occurrences on token boundaries, and distinct tokenizations per keyword found."""
    from slmops.demo.lexicon import CATEGORY_KEYWORDS

    keywords = {k for words in CATEGORY_KEYWORDS.values() for k in words if not k.isascii()}
    variants, aligned, total = defaultdict(set), 0, 0
    for text in inputs:
        encoded = tokenizer(text, return_offsets_mapping=True)
        spans, ids = encoded["offset_mapping"], encoded["input_ids"]
        for keyword in keywords:
            start = text.find(keyword)
            if start < 0:
                continue
            end, total = start + len(keyword), total + 1
            variants[keyword].add(tuple(i for i, (a, b) in zip(ids, spans, strict=True) if b > start and a < end))
            aligned += any(a == start for a, _ in spans) and any(b == end for _, b in spans)
    return {"aligned": aligned / total, "tokenizations": statistics.mean(len(v) for v in variants.values())}


def script_split_tokenizer(project: Path, vocab_size: int):
    """The demo's tokenizer trained again on its corpus with kanji/hiragana/katakana runs as pre-tokens."""
    from tokenizers import Regex, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from slmops.config import load_params
    from slmops.demo.tokenizer import corpus, train_bpe
    from slmops.tasks import load_task

    task = load_task(load_params(None, project=project).task, project)
    split = pre_tokenizers.Split(pattern=Regex(SCRIPT_RUNS), behavior="isolated")
    bpe = train_bpe(vocab_size, corpus(task, project / "data" / "raw"), split)
    return PreTrainedTokenizerFast(tokenizer_object=bpe), task


def sequence_mean(tokenizer, task, rows: list[dict], template: str) -> float:
    """Mean tokens of a whole training sequence: the chat template around the prompt and the answer."""
    tokenizer.chat_template = template
    return statistics.mean(
        len(tokenizer.apply_chat_template(
            task.build_messages(r["input"]) + [{"role": "assistant", "content": task.format_output(r["expected"])}]))
        for r in rows
    )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--project", type=Path, default=Path("demo"))
    parser.add_argument("--script-split", action="store_true", help="also train and measure a script-split BPE")
    opts = parser.parse_args()
    project = opts.project
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(project / "models" / "tokenizer")
    train = load_jsonl(project / "data" / "synthetic" / "train.jsonl")
    texts: dict[str, list[str]] = {}
    for row in train:
        texts.setdefault(row.get("source", "unknown"), []).append(row["input"])
    texts["dev_handwritten"] = [r["input"] for r in load_jsonl(project / "data" / "dev_handwritten.jsonl")]
    figures: dict = {}
    for name, inputs in texts.items():
        lengths = sorted(len(tokenizer(t)["input_ids"]) for t in inputs)
        figures[name] = {"rows": len(lengths), "median": statistics.median(lengths), "max": lengths[-1]}
        print(f"{name:<18} rows {len(lengths):>6,}  median tokens {figures[name]['median']:>6}  max {lengths[-1]:>5}")
    tokenizers = {"demo": tokenizer}
    if opts.script_split:
        tokenizers["script_split"], task = script_split_tokenizer(project, len(tokenizer))
    for name, tok in tokenizers.items():
        kw = keyword_figures(tok, [r["input"] for r in train])
        figures[f"keywords_{name}"] = kw
        line = f"{name:<13} keyword occurrences on token boundaries {kw['aligned']:.3f}, "
        line += f"tokenizations per keyword {kw['tokenizations']:.2f}"
        if opts.script_split:
            kw["sequence_mean"] = sequence_mean(tok, task, train, tokenizer.chat_template)
            line += f", whole training sequence {kw['sequence_mean']:.1f} tokens"
        print(line)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
