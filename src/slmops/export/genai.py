"""The ONNX Runtime GenAI form: GenAI's model builder run on the merged transformers folder.

Usage:
    build_genai(Path("models/student"), Path("models/student_onnx/genai_int4"), precision="int4")

The builder writes its own graph (fused attention, int4 MatMulNBits weights, a KV cache sized for
``past_present_share_buffer``), ``genai_config.json`` and the tokenizer files, which
``slmops.inference.genai_model.GenAIChatModel`` serves. It runs offline, in a child process
(``python -m slmops.export.genai_builder``, which adapts GenAI 0.18's builder to the pinned transformers), from
the local folder (``-i``) with ``HF_HUB_OFFLINE=1``; the demo's own tokenizer goes through as its
``tokenizer.json``, which both GenAI and transformers read.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from slmops.export.passes import last_position_logits

GENAI_PRECISIONS = {"genai_int4": "int4"}  # form name -> the builder's precision (-p)


def build_genai(model_dir: Path, out_dir: Path, precision: str = "int4", block_size: int = 32) -> Path:
    """Build a GenAI folder from a transformers causal-LM folder; raises ``RuntimeError`` with the builder's
    last output lines when it fails (e.g. an architecture it does not support)."""
    shutil.rmtree(out_dir, ignore_errors=True)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="genai-cache-") as cache:
        command = [
            sys.executable, "-m", "slmops.export.genai_builder",
            "-m", str(model_dir), "-i", str(model_dir), "-o", str(out_dir), "-c", cache,
            "-p", precision, "-e", "cpu", "--extra_options", f"block_size={block_size}",
        ]  # fmt: skip
        env = os.environ | {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
        done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=cache)
    if done.returncode != 0 or not (out_dir / "genai_config.json").exists():
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-15:])
        raise RuntimeError(f"ONNX Runtime GenAI's model builder failed on {model_dir}:\n{tail}")
    last_position_logits(out_dir / "model.onnx", right_padded=True)  # the builder computes every prompt position
    for name in ("generation_config.json",):  # beside the graph, as in the other forms' folders
        if (model_dir / name).exists():
            shutil.copy2(model_dir / name, out_dir / name)
    return out_dir
