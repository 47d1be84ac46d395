"""The regex masker slmops used before the Presidio one (kept for ``benchmarks/pii.py``'s side-by-side figures).

Usage:
    python -c "from slmops.text.pii import legacy; print(legacy.mask('電話は090-1234-5678です'))"

Known gaps it is kept to measure (issue 14): no names, no street-level addresses, no bank accounts or passports,
any 12-digit number is a My Number and any 13-19 digit number a card. Text is NFKC-normalised first, so
full-width digits (０９０－…) are caught too. Order matters: the longer, more specific
patterns (card, My Number) run before phone numbers so a card is not half-masked as a phone.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter

_DASHES = r"\-‐‑‒–—―ー−"  # after NFKC most dashes are '-', but ー (katakana long mark) is often typed as one
_DASH = f"[{_DASHES}]"
_SEP = f"[ {_DASHES}]"  # a group separator: space or dash
_PREFS = (
    "北海道|青森県|岩手県|宮城県|秋田県|山形県|福島県|茨城県|栃木県|群馬県|埼玉県|千葉県|東京都|神奈川県|"
    "新潟県|富山県|石川県|福井県|山梨県|長野県|岐阜県|静岡県|愛知県|三重県|滋賀県|京都府|大阪府|兵庫県|"
    "奈良県|和歌山県|鳥取県|島根県|岡山県|広島県|山口県|徳島県|香川県|愛媛県|高知県|福岡県|佐賀県|長崎県|"
    "熊本県|大分県|宮崎県|鹿児島県|沖縄県"
)

# (label, pattern); applied in this order.
PATTERNS: list[tuple[str, re.Pattern[str]]] = [
    ("EMAIL", re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")),
    # 13-19 digit card numbers in groups of 4 (Visa/Master/JCB/Amex style); Luhn is not required.
    ("CARD", re.compile(rf"(?<!\d)(?:\d{{4}}{_SEP}?){{3}}\d{{1,7}}(?!\d)")),
    # My Number: 12 digits, optionally grouped 4-4-4.
    ("MYNUMBER", re.compile(rf"(?<!\d)\d{{4}}{_SEP}?\d{{4}}{_SEP}?\d{{4}}(?!\d)")),
    # Postal code: 〒123-4567 or 123-4567 (the 〒 mark is optional).
    ("POSTAL", re.compile(rf"〒\s?\d{{3}}{_DASH}?\d{{4}}|(?<![\d{_DASHES}])\d{{3}}{_DASH}\d{{4}}(?![\d{_DASHES}])")),
    # Phones: mobile 0[789]0-xxxx-xxxx, landline 0x-xxxx-xxxx / 0xx-xxx-xxxx, toll-free 0120, +81 forms.
    (
        "PHONE",
        re.compile(rf"(?<!\d)(?:\+81{_SEP}?\d{{1,4}}|0\d{{1,4}}){_SEP}?\(?\d{{1,4}}\)?{_SEP}?\d{{3,4}}(?!\d)"),
    ),
    # Addresses: a prefecture followed by city/ward/town and a block number (丁目/番地/-).
    (
        "ADDRESS",
        re.compile(
            rf"(?:{_PREFS})[^\s、。,]{{1,20}}?[市区町村郡][^\s、。,]{{0,20}}?\d+(?:丁目|{_DASH})\d+(?:番地?|{_DASH})?\d*(?:号)?"
        ),
    ),
]


def normalize(text: str) -> str:
    """Unicode NFKC: full-width ASCII to half-width, half-width katakana to full-width, etc."""
    return unicodedata.normalize("NFKC", text)


def mask(text: str, counts: Counter[str] | None = None) -> str:
    """Return ``text`` NFKC-normalised with every PII match replaced by ``[LABEL]``."""
    text = normalize(text)
    for label, pattern in PATTERNS:
        text, n = pattern.subn(f"[{label}]", text)
        if counts is not None and n:
            counts[label] += n
    return text


def spans(text: str) -> list[tuple[str, int, int]]:
    """``(label, start, end)`` of what :func:`mask` replaces, as offsets into ``normalize(text)``.

    The patterns run in the same order as in :func:`mask`; a match is blanked out with private-use characters of the
    same length (instead of ``[LABEL]``) so later patterns cannot match it and the offsets stay valid.
    """
    text = normalize(text)
    found = []
    for label, pattern in PATTERNS:
        for m in pattern.finditer(text):
            found.append((label, m.start(), m.end()))
        text = pattern.sub(lambda m: "\ue000" * len(m.group(0)), text)
    return sorted(found, key=lambda f: f[1])


def find_pii(text: str) -> list[tuple[str, str]]:
    """Every ``(label, match)`` still present in ``text`` (used to scan outputs for leaks)."""
    text = normalize(text)
    return [(label, m.group(0)) for label, pattern in PATTERNS for m in pattern.finditer(text)]
