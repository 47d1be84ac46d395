"""The offline demo's stand-ins: generated data, a tokenizer and a tiny student base model (``slmops demo build``).

Nothing here is used by the production path; it only builds what a real user would bring or download. The
task spec names its data generator (``demo_generator: module:function``); ``write_data`` runs it.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from slmops.io import write_jsonl, write_manifest


def load_generator(ref: str):
    module, _, name = ref.partition(":")
    return getattr(importlib.import_module(module), name)


def write_data(
    generator: str, seed: int, n_seed: int, n_pool: int, n_test: int, out_dir: Path, **options
) -> dict[str, int]:
    """Write ``seed.jsonl`` (labelled), ``pool.jsonl`` (unlabelled) and ``test.jsonl`` from the task's generator
    (``options``: its extra keyword arguments, from ``demo.generator_options``)."""
    sets = load_generator(generator)(seed, n_seed, n_pool, n_test, **options)
    counts = {name: write_jsonl(out_dir / f"{name}.jsonl", rows) for name, rows in sets.items()}
    write_manifest(out_dir, stage="demo_data", generator=generator, seed=seed, counts=counts)
    return counts
