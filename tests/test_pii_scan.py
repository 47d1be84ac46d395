"""``slmops pii scan``: file, line, type and field of suspected PII in JSONL, CSV and text; exit codes."""

from __future__ import annotations

import json

from slmops.text.pii.scan import Finding, scan_file
from tests.conftest import slmops


def _write(tmp_path):
    jsonl = tmp_path / "tickets.jsonl"
    rows = [
        {"id": 1, "input": "電話は090-1234-5678です", "meta": {"who": "中村健一様"}},
        {"id": 2, "input": "注文番号ORD-20251230-0099の件"},
    ]
    jsonl.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\nnot json 〒100-0005\n")
    table = tmp_path / "contacts.csv"
    table.write_text('id,text\n1,"メールは a.sato@example.com"\n2,問題ありません\n', encoding="utf-8")
    clean = tmp_path / "clean.txt"
    clean.write_text("エラーコードE404が出ます\nバージョン2.3.1\n", encoding="utf-8")
    return jsonl, table, clean


def test_scan_file_reports_line_type_and_field(tmp_path):
    jsonl, table, clean = _write(tmp_path)
    assert list(scan_file(jsonl)) == [
        Finding(str(jsonl), 1, "PHONE", "input"),
        Finding(str(jsonl), 1, "NAME", "meta.who"),
        Finding(str(jsonl), 3, "POSTAL", None),  # a line that is not JSON is scanned as text, not skipped
    ]
    assert list(scan_file(table)) == [Finding(str(table), 2, "EMAIL", "text")]
    assert list(scan_file(clean)) == []


def test_cli_scan_exits_1_on_pii_without_printing_the_values(tmp_path):
    jsonl, table, clean = _write(tmp_path)
    proc = slmops("pii", "scan", str(jsonl), str(table), str(clean), check=False)
    assert proc.returncode == 1, proc.stderr
    assert proc.stdout.splitlines() == [
        f"{jsonl}:1: PHONE (input)",
        f"{jsonl}:1: NAME (meta.who)",
        f"{jsonl}:3: POSTAL",
        f"{table}:2: EMAIL (text)",
    ]
    assert "090-1234-5678" not in proc.stdout + proc.stderr and "a.sato" not in proc.stdout + proc.stderr
    assert "PHONE 1" in proc.stderr


def test_cli_scan_exits_0_on_clean_files_and_2_on_missing_ones(tmp_path):
    _, _, clean = _write(tmp_path)
    assert slmops("pii", "scan", str(clean), check=False).returncode == 0
    proc = slmops("pii", "scan", str(clean), str(tmp_path / "nope.jsonl"), check=False)
    assert proc.returncode == 2 and "nope.jsonl" in proc.stderr
