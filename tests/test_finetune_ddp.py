"""Finetune in 2 CPU processes (accelerate launch over gloo: DDP for LoRA, FSDP for full fine-tuning) reaches the
loss of 1 process on the same global batch, data and seed; rank 0 alone merges (or gathers) and saves."""

from __future__ import annotations

import os
import time

import pytest
import torch

from slmops.config import FinetuneConfig, LoraParams, TrainingConfig
from slmops.io import load_jsonl, write_jsonl
from slmops.tasks import load_task
from slmops.train import finetune, launch
from tests.projects import TRIAGE

# The losses agreed to 4 decimals in every step when measured (2-core CPU); 1e-3 leaves room for the order of
# floating-point sums, nothing more.
LOSS_TOLERANCE = 1e-3


def _cfg(processes: int, batch_size: int, method: str = "auto", learning_rate: float = 1e-2) -> FinetuneConfig:
    return FinetuneConfig(
        method=method,
        processes=processes,
        lora=LoraParams(r=8, alpha=16, dropout=0.0),  # dropout draws differ per rank: off, to compare like for like
        training=TrainingConfig(
            max_steps=8,
            batch_size=batch_size,
            learning_rate=learning_rate,
            max_length=160,
            logging_steps=1,
            warmup_ratio=0.0,
        ),
    )


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU (gloo) test; with CUDA each rank needs its own GPU")
def test_two_processes_reach_the_loss_of_one_on_the_same_global_batch(tiny_models, tmp_path, capfd):
    paths = _paths(tiny_models, tmp_path)
    one = finetune.run(_cfg(1, 12), task=load_task("ticket_triage", TRIAGE), out_dir=tmp_path / "one", **paths)
    two = launch.run(_cfg(2, 6), task_ref="ticket_triage", root=TRIAGE, out_dir=tmp_path / "two", **paths)

    assert two.global_step == one.global_step == 8 and two.train_examples == 48
    assert (two.method, one.method) == ("lora", "lora") and two.method_reason.startswith("auto: no CUDA")
    assert (two.parallel, one.parallel) == ("ddp", "none")
    losses = [[h["loss"] for h in r.log_history if "loss" in h] for r in (one, two)]
    assert losses[0][-1] < losses[0][0]  # it trained
    assert max(abs(a - b) for a, b in zip(*losses, strict=True)) < LOSS_TOLERANCE
    assert abs(two.final_train_loss - one.final_train_loss) < LOSS_TOLERANCE
    out = capfd.readouterr().out
    assert out.count("finetune method lora") == 2  # once per run: rank 1 prints nothing

    from transformers import AutoModelForCausalLM

    merged = [AutoModelForCausalLM.from_pretrained(tmp_path / name) for name in ("one", "two")]
    diffs = [(a - b).abs().max().item() for a, b in zip(*(m.parameters() for m in merged), strict=True)]
    assert max(diffs) < 1e-3  # the same merged weights, saved once (rank 0) with its manifest
    assert (tmp_path / "two" / "manifest.json").exists() and not (tmp_path / "two" / "checkpoints").exists()


def _paths(tiny_models, tmp_path) -> dict:
    # 48 rows: 4 full global batches of 12 an epoch, so no rank ever gets a short or padded batch.
    train = tmp_path / "train.jsonl"
    write_jsonl(train, load_jsonl(tiny_models["prepared"] / "train.jsonl")[:48])
    return {"train": train, "val": tiny_models["prepared"] / "val.jsonl", "base_model": str(tiny_models["model"])}


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU (gloo) test; with CUDA each rank needs its own GPU")
def test_full_fine_tuning_in_two_processes_shards_with_fsdp_and_matches_one(tiny_models, tmp_path, capfd):
    from transformers import AutoModelForCausalLM

    paths, started = _paths(tiny_models, tmp_path), time.perf_counter()
    one = finetune.run(
        _cfg(1, 12, "full", 1e-3), task=load_task("ticket_triage", TRIAGE), out_dir=tmp_path / "one", **paths
    )
    between = time.perf_counter()
    two = launch.run(_cfg(2, 6, "full", 1e-3), task_ref="ticket_triage", root=TRIAGE, out_dir=tmp_path / "two", **paths)
    seconds = (between - started, time.perf_counter() - between)

    # FSDP, not DDP: the ranks held DTensor shards (accelerate alone would have fallen back to DDP on a CPU).
    assert (two.parallel, one.parallel) == ("fsdp", "none") and two.method == "full"
    assert two.global_step == one.global_step == 8 and two.trainable_params == two.total_params == one.total_params
    losses = [[h["loss"] for h in r.log_history if "loss" in h] for r in (one, two)]
    assert len(losses[1]) == 8 and losses[0][-1] < losses[0][0]  # it trained
    worst = max(abs(a - b) for a, b in zip(*losses, strict=True))
    assert worst < LOSS_TOLERANCE
    assert capfd.readouterr().out.count("finetune method full") == 2  # once per run: rank 1 prints nothing
    with capfd.disabled():  # the README's figures (pytest -s): wall time of each call, and the trainer's own
        trained = [next(h["train_runtime"] for h in r.log_history if "train_runtime" in h) for r in (one, two)]
        print(f"\nfull FT, 8 steps, loss 1 process {losses[0][0]:.4f} -> {losses[0][-1]:.4f}, 2 processes (FSDP)")
        print(f"{losses[1][0]:.4f} -> {losses[1][-1]:.4f}, max step difference {worst:.1e}; wall {seconds[0]:.1f} s")
        print(f"vs {seconds[1]:.1f} s (launch included), training loop {trained[0]:.1f} s vs {trained[1]:.1f} s")

    # Rank 0 wrote the gathered weights once, as a plain model folder that loads on its own.
    saved, alone, base = (
        AutoModelForCausalLM.from_pretrained(p) for p in (tmp_path / "two", tmp_path / "one", paths["base_model"])
    )
    assert saved.config.architectures == ["LlamaForCausalLM"]
    assert (tmp_path / "two" / "manifest.json").exists() and not (tmp_path / "two" / "checkpoints").exists()
    assert not (tmp_path / "two" / "adapter").exists()
    named = dict(saved.named_parameters())
    assert max((named[n] - p).abs().max().item() for n, p in alone.named_parameters()) < 1e-3  # = one process's
    assert min((named[n] - p).abs().max().item() for n, p in base.named_parameters()) > 0  # every tensor moved


def test_processes_is_a_finetune_option_and_the_launcher_shares_the_cores(tmp_path):
    from typer.testing import CliRunner

    from slmops.cli import app

    refused = CliRunner().invoke(app, ["stage", "prepare", "--processes", "2", "--project", str(TRIAGE)])
    assert refused.exit_code == 2 and "finetune stage only" in refused.output
    command = launch.launch_command(2, tmp_path / "request.json", port=29999)
    assert command[command.index("--num_processes") + 1] == "2"
    assert command[-3:] == ["-m", "slmops.train.launch", str(tmp_path / "request.json")]
    threads = int(command[command.index("--num_cpu_threads_per_process") + 1])
    assert threads == max(1, (os.cpu_count() or 1) // 2)
    assert "--multi_gpu" in command and "--use_fsdp" not in command  # DDP unless asked for FSDP
    sharded = launch.launch_command(2, tmp_path / "request.json", port=29999, fsdp=True)
    assert "--multi_gpu" not in sharded and sharded[sharded.index("--fsdp_version") + 1] == "2"
    assert sharded[sharded.index("--fsdp_state_dict_type") + 1] == "FULL_STATE_DICT"
