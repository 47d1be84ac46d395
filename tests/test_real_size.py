"""benchmarks/real_size.py's table and its optional llama.cpp forms (no model is built here)."""

from __future__ import annotations

from benchmarks import llama_cpp_forms, real_size


def _row(form: str, size: float, tok_s: float, b8: float | None) -> dict:
    return {
        "form": form,
        "size_mb": size,
        "load_s": 1.0,
        "ttft_ms": 100.0,
        "decode_tok_s_b1": tok_s,
        "decode_tok_s_b8": b8,
        "peak_rss_mb": 500.0,
    }


def test_table_gives_ratios_to_torch_and_marks_a_missing_batch_figure():
    rows = [_row("torch_fp32", 2000, 5.0, 20.0), _row("gguf_q4_k_m", 400, 20.0, None)]
    lines = real_size.table(rows).splitlines()
    assert lines[2].startswith("| torch_fp32 | 2000 | 1.00 |")
    assert lines[3] == "| gguf_q4_k_m | 400 | 5.00 | 1.0 | 100 | 20.0 | 4.00 | n/a | 500 |"


def test_llama_cpp_forms_are_dropped_with_a_reason_when_not_installed(monkeypatch):
    monkeypatch.setattr(llama_cpp_forms, "available", lambda: False)
    forms, skipped = real_size.available_forms(["int8", "gguf_q8_0", "gguf_q4_k_m"])
    assert forms == ["int8"] and "pip install llama-cpp-python gguf" in skipped
    monkeypatch.setattr(llama_cpp_forms, "available", lambda: True)
    assert real_size.available_forms(["int8", "gguf_q8_0"]) == (["int8", "gguf_q8_0"], None)
