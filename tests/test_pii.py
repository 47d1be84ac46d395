"""Japanese PII formats are masked, nothing else is, and the CLI applies the same masking."""

from __future__ import annotations

import pytest

from components.pii import find_pii, mask
from tests.conftest import slmops


@pytest.mark.parametrize(
    ("text", "label"),
    [
        ("携帯は090-1234-5678です", "PHONE"),
        ("会社の電話 03-1234-5678", "PHONE"),
        ("フリーダイヤル0120-123-456", "PHONE"),
        ("+81 90-1234-5678 まで", "PHONE"),
        ("ＴＥＬ：０９０－１２３４－５６７８", "PHONE"),  # full-width: NFKC first
        ("メール taro.yamada@example.co.jp", "EMAIL"),
        ("〒150-0001 です", "POSTAL"),
        ("東京都渋谷区神宮前1-2-3に住んでいます", "ADDRESS"),
        ("大阪府大阪市北区梅田3丁目1番地", "ADDRESS"),
        ("マイナンバーは1234 5678 9012です", "MYNUMBER"),
        ("カード 4111-1111-1111-1111 で払いました", "CARD"),
        ("card 4111111111111111", "CARD"),
    ],
)
def test_each_format_is_masked(text, label):
    masked = mask(text)
    assert f"[{label}]" in masked, masked
    assert not find_pii(masked), f"PII left in {masked!r}"


@pytest.mark.parametrize(
    "text", ["注文番号A12345678の件です", "2,300円を請求されました", "12月3日に届く予定", "エラーコードE404"]
)
def test_ordinary_text_is_left_alone(text):
    assert mask(text) == text


def test_nfkc_normalises_full_width_ascii():
    assert mask("ＡＢＣ１２３") == "ABC123"


def test_cli_masks_stdin_line_by_line():
    proc = slmops("pii", "mask", input="電話は090-1234-5678です\nメールはa@b.jp\n普通の文\n")
    assert proc.stdout.splitlines() == ["電話は[PHONE]です", "メールは[EMAIL]", "普通の文"]
