"""FSDP for full fine-tuning in several processes: the launcher's flags, FSDP kept on CPU ranks, the full weights
gathered for rank 0.

Usage:
    launch_flags(fsdp=True)            # accelerate launch flags: FSDP2, full shard, one full state dict on save
    keep_fsdp_on_cpu(trainer)          # in each rank, after the Trainer is built and before it trains
    state = full_state_dict(trainer)   # on every rank (a collective); the weights on rank 0, {} elsewhere

``accelerate launch --use_fsdp`` sets ``ACCELERATE_USE_FSDP`` and ``FSDP_*`` for every rank; the Trainer's
Accelerator builds its FSDP plugin from them. On GPUs that is all. On CPU ranks accelerate 1.15 drops the plugin:
its state turns FSDP on only for accelerator device types (``DistributedType.MULTI_GPU`` and kin, not
``MULTI_CPU``), so the Trainer would wrap the model in DDP and say nothing. torch's FSDP2 (``fully_shard``) does
run on CPUs over gloo, so ``keep_fsdp_on_cpu`` puts the plugin back, built from the same variables, and marks the
state FSDP as accelerate itself does on GPUs (tests/test_finetune_ddp.py: 2 CPU ranks shard and match 1 process).
"""

from __future__ import annotations

import os

# FSDP2 (fully_shard), parameters, gradients and optimizer state sharded across ranks and resharded after each
# forward (FULL_SHARD); each decoder layer its own unit (the model's ``_no_split_modules``); saving gathers one
# full state dict. sync_module_states off: every rank loads the same base from disk, and on a CPU accelerate's
# plugin refuses it (it looks for a GPU to broadcast from).
FSDP_FLAGS = (
    *("--use_fsdp", "--fsdp_version", "2", "--fsdp_reshard_after_forward", "true"),
    *("--fsdp_auto_wrap_policy", "TRANSFORMER_BASED_WRAP", "--fsdp_state_dict_type", "FULL_STATE_DICT"),
    *("--fsdp_sync_module_states", "false", "--fsdp_cpu_ram_efficient_loading", "false"),
)


def launch_flags(fsdp: bool) -> list[str]:
    """``accelerate launch``'s mode flags: FSDP (full fine-tuning), else DDP (``--multi_gpu`` is its
    multi-process mode; without CUDA the ranks train on the CPU)."""
    return list(FSDP_FLAGS) if fsdp else ["--multi_gpu"]


def keep_fsdp_on_cpu(trainer) -> bool:
    """Turn FSDP back on where the launcher asked for it and accelerate dropped it (CPU ranks); ``True`` when
    the trainer will shard. A no-op without ``--use_fsdp`` and on GPUs, where accelerate keeps it."""
    from accelerate.state import PartialState
    from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin

    if os.environ.get("ACCELERATE_USE_FSDP", "false").lower() != "true":
        return False
    state = trainer.accelerator.state
    if state.distributed_type == DistributedType.MULTI_CPU:
        state.fsdp_plugin = FullyShardedDataParallelPlugin()  # from the launcher's FSDP_* variables
        # Both states: AcceleratorState copies PartialState's type each time one is built (accelerate does the
        # same for FSDP on GPUs).
        state.distributed_type = PartialState().distributed_type = DistributedType.FSDP
        trainer.is_fsdp_enabled = True
    return bool(trainer.is_fsdp_enabled)


def is_sharded(model) -> bool:
    """Whether FSDP2 sharded ``model``: its parameters are DTensors, each rank holding a slice."""
    from torch.distributed.tensor import DTensor

    return any(isinstance(p, DTensor) for p in model.parameters())


def full_state_dict(trainer) -> dict:
    """The trained weights gathered from every rank: the full tensors on rank 0 (on the CPU), ``{}`` on the
    others. Every rank must call it."""
    return trainer.accelerator.get_state_dict(trainer.model)
