"""Finetune in several processes: ``accelerate launch`` starts N ranks of this module (DDP for LoRA and QLoRA, FSDP
for full fine-tuning: ``slmops.train.fsdp``); rank 0 merges, saves and writes the result that the calling process
returns.

Usage:
    slmops stage finetune --processes 2           # or finetune.processes: 2 in a profile (slmops run, Prefect)
    python -m slmops.train.launch REQUEST.json     # what each rank runs (``run`` writes the request)

On a CPU the ranks talk over gloo and share the cores (``cores // processes`` threads each); with CUDA, NCCL and
one process per GPU. ``finetune.training.batch_size`` is per process: the global batch is processes x batch_size,
and the ranks take consecutive slices of the same shuffled order (tests/test_finetune_ddp.py: 2 processes at
batch 6 reach the loss of 1 process at batch 12).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

from slmops.config import FinetuneConfig
from slmops.train.finetune import FinetuneResult
from slmops.train.fsdp import launch_flags


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch_command(processes: int, request: Path, port: int, fsdp: bool = False) -> list[str]:
    """``accelerate launch`` of ``processes`` ranks of this module (torchrun underneath), with DDP or ``fsdp``."""
    threads = max(1, (os.cpu_count() or 1) // processes)
    return [
        *(sys.executable, "-m", "accelerate.commands.launch", *launch_flags(fsdp)),
        *("--num_processes", str(processes), "--num_machines", "1", "--main_process_port", str(port)),
        *("--mixed_precision", "no", "--dynamo_backend", "no"),  # bf16 on CUDA comes from finetune's own args
        *("--num_cpu_threads_per_process", str(threads)),
        *("-m", "slmops.train.launch", str(request)),
    ]


def run(
    cfg: FinetuneConfig,
    *,
    task_ref: str,
    root: Path,
    train: Path,
    val: Path | None,
    base_model: str,
    out_dir: Path,
    seed: int = 42,
) -> FinetuneResult:
    """``finetune.run`` in ``cfg.processes`` processes, sharded with FSDP when ``cfg.method`` is ``full``. The task
    is loaded in each rank from ``task_ref`` (a spec name in the project at ``root``, a spec path or
    ``module:Class``)."""
    with tempfile.TemporaryDirectory(prefix="slmops-launch-") as tmp:
        request, result = Path(tmp) / "request.json", Path(tmp) / "result.json"
        paths = {"train": train, "val": val, "out_dir": out_dir, "root": root, "result": result}
        fields = {k: str(v) if v is not None else None for k, v in paths.items()}
        fields |= {"cfg": cfg.model_dump(mode="json"), "task": task_ref, "base_model": base_model, "seed": seed}
        request.write_text(json.dumps(fields))
        command = launch_command(cfg.processes, request, free_port(), fsdp=cfg.method == "full")
        proc = subprocess.run(command, check=False)
        if proc.returncode != 0 or not result.exists():
            raise RuntimeError(
                f"finetune in {cfg.processes} processes failed (exit {proc.returncode}); the ranks' output is above"
            )
        return FinetuneResult.model_validate_json(result.read_text())


def main(argv: list[str] | None = None) -> None:
    """One rank: load the request, train (every rank), write the result (rank 0)."""
    from slmops.config.project import use_project
    from slmops.tasks import load_task
    from slmops.train import finetune

    request = json.loads(Path((argv or sys.argv[1:])[0]).read_text())
    root = Path(request["root"])
    use_project(root)
    result = finetune.run(
        FinetuneConfig.model_validate_json(json.dumps(request["cfg"])),
        task=load_task(request["task"], root),
        train=Path(request["train"]),
        val=Path(request["val"]) if request["val"] else None,
        base_model=request["base_model"],
        out_dir=Path(request["out_dir"]),
        seed=request["seed"],
    )
    if os.environ.get("RANK", "0") == "0":
        Path(request["result"]).write_text(result.model_dump_json())


if __name__ == "__main__":
    main()
