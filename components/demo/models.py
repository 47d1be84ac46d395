"""Build the demo's tiny student base model and its larger demo teacher, offline, on two CPU cores.

Usage:
    python -m components.demo.models student --profile demo --tokenizer models/tokenizer \
        --prepared data/prepared --out-dir models/student_base
    python -m components.demo.models teacher --profile demo --tokenizer models/tokenizer \
        --prepared data/prepared --out-dir models/teacher

student: a Llama-style decoder (~1M params) pretrained on unlabelled domain text; stands in for a hub SLM.
teacher: the same architecture, wider, at >= 4x the parameters, fine-tuned on the gold seed set (optionally
after pretraining, ``teacher_pretrain_epochs``) both to label inquiries and to write new ones (self-instruct);
it is exported to ONNX and served over HTTP so the pipeline talks to it exactly as it would to a real LLM
endpoint.
"""

from __future__ import annotations

import random
from pathlib import Path

from pydantic import BaseModel

from components.config import DemoConfig, TinyModelConfig, TrainingConfig
from components.finetune import plot_loss, sft_records, train_sft, training_args
from components.io import load_jsonl, write_manifest
from components.tasks import ticket_triage as task


class DemoModelResult(BaseModel):
    model_dir: Path
    params: int
    final_loss: float | None


def init_model(cfg: TinyModelConfig, tokenizer):
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=cfg.hidden_size,
        num_hidden_layers=cfg.num_layers,
        intermediate_size=cfg.intermediate_size,
        num_attention_heads=cfg.num_heads,
        num_key_value_heads=cfg.num_heads,
        max_position_embeddings=cfg.max_position_embeddings,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    return LlamaForCausalLM(config)


def pretrain(model, tokenizer, texts: list[str], cfg: TrainingConfig, out_dir: Path, seed: int):
    """Causal-LM pretraining on raw text, packed into fixed-length blocks."""
    rows = [{"text": t + tokenizer.eos_token} for t in texts]
    args = training_args(cfg, out_dir, seed, packing=True, packing_strategy="wrapped", dataset_text_field="text")
    return train_sft(model, tokenizer, rows, None, args)


def augment_pairs(rows: list[dict], n: int, seed: int) -> list[dict]:
    """Self-instruct pairs: (category, one seed inquiry) -> another inquiry of that category."""
    rng = random.Random(seed)
    by_cat: dict[str, list[str]] = {}
    for r in rows:
        by_cat.setdefault(r["expected"]["category"], []).append(r["input"])
    pairs = []
    for _ in range(n):
        category = rng.choice(sorted(by_cat))
        example, target = rng.sample(by_cat[category], 2)
        pairs.append(
            {
                "prompt": task.build_augment_messages(category, example),
                "completion": [{"role": "assistant", "content": target}],
            }
        )
    return pairs


def build(
    which: str, demo: DemoConfig, *, tokenizer_dir: Path, prepared: Path, out_dir: Path, seed: int
) -> DemoModelResult:
    from transformers import AutoTokenizer, set_seed

    set_seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    model = init_model(demo.student if which == "student" else demo.teacher, tokenizer)
    texts = [r["input"] for name in ("pool", "train") for r in load_jsonl(prepared / f"{name}.jsonl")]
    cfg = (
        demo.pretrain
        if which == "student"
        else demo.pretrain.model_copy(update={"epochs": demo.teacher_pretrain_epochs})
    )
    history = pretrain(model, tokenizer, texts, cfg, out_dir, seed)[1] if cfg.epochs > 0 else []
    if which == "teacher":
        gold = load_jsonl(prepared / "train.jsonl")
        train = sft_records(gold, task.build_teacher_messages) + augment_pairs(gold, len(gold) // 8, seed)
        val = sft_records(load_jsonl(prepared / "val.jsonl"), task.build_teacher_messages)
        trainer, sft_history = train_sft(model, tokenizer, train, val, training_args(demo.teacher_sft, out_dir, seed))
        history = sft_history
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    plot_loss(history, out_dir / "loss_curve.png")
    losses = [h["loss"] for h in history if "loss" in h]
    result = DemoModelResult(
        model_dir=out_dir, params=sum(p.numel() for p in model.parameters()), final_loss=losses[-1] if losses else None
    )
    import shutil

    shutil.rmtree(out_dir / "checkpoints", ignore_errors=True)
    write_manifest(out_dir, stage=f"demo_{which}", **result.model_dump(exclude={"model_dir"}))
    return result


def main() -> None:
    import argparse

    from components.config import load_params

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("which", choices=["student", "teacher"])
    parser.add_argument("--profile", default=None)
    parser.add_argument("--tokenizer", type=Path, required=True)
    parser.add_argument("--prepared", type=Path, required=True)
    parser.add_argument("--out-dir", type=Path, required=True)
    args = parser.parse_args()
    params = load_params(args.profile)
    result = build(
        args.which,
        params.demo,
        tokenizer_dir=args.tokenizer,
        prepared=args.prepared,
        out_dir=args.out_dir,
        seed=params.project.seed,
    )
    print(result.model_dump_json(indent=2))


if __name__ == "__main__":
    main()
