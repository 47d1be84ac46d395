"""Further mentions of a name already found: its reading beside it, and the same name again later in the text.

Usage:
    python -c "from slmops.text.pii import mask; print(mask('西園寺 蓮さんが来店。西園寺さんの会員証は期限切れ'))"

The recognizers judge each span on its own evidence, so a name that was sure once (西園寺 蓮さん) may be missed where
it comes back bare (西園寺さんの…, or written in another script). These passes run after the overlaps are
resolved and work on the findings, whatever recognizer made them:
- a reading in brackets or after a slash right after a name is the same name: 後藤亜美（ゴトウ アミ）,
  平田 正樹 / Masaki Hirata (romaji only when every word spells Japanese syllables, so ``/ Sales Dept`` stays);
- every further occurrence of a found name, or of one of its parts (the surname alone), is masked too, when it
  stands as a word of its own (千葉さん masked does not mask 千葉県); a katakana surname repeated with a katakana
  given name after it takes that given name along (アライ ケイスケ … アライ ケンスケ).
"""

from __future__ import annotations

import re

_KANA_READING = r"[ぁ-ゖァ-ヴー]{2,12}(?:[\s・][ぁ-ゖァ-ヴー]{1,12})?"
_LATIN_READING = r"[A-Z][a-z]+(?:\s[A-Z][A-Za-z]+){1,2}"
_BRACKETED = re.compile(rf"\s?\(\s?({_KANA_READING}|{_LATIN_READING})\s?\)")
_SLASHED = re.compile(rf"\s?/\s?({_KANA_READING}|[A-Z][A-Za-z]+(?:\s[A-Z][A-Za-z]+){{0,2}})(?![A-Za-z])")
# Hepburn (and common variants: Satoh, Itou, Ohno): syllables, a doubled consonant, a syllabic n.
_ROMAJI = re.compile(
    r"(?:(?:sh|ch|ts|[kgnhbpmr]y|[kgsztdnhbpmrfjvwy])?[aiueo]|n(?![aiueoy])|([kstpgbdcfjz])(?=\1)|(?<=[aeiou])h)+"
)
_SCRIPTS = ("[一-龯々]", "[ァ-ヴー]", "[A-Za-z]")


def is_romaji(word: str) -> bool:
    """``Masaki``, ``Hirata``, ``Tsubasa`` spell Japanese syllables; ``Sales``, ``Dept``, ``Daniel`` do not."""
    return _ROMAJI.fullmatch(word.lower()) is not None


def with_readings(text: str, kept: list) -> list:
    """The bracketed or slashed reading after a name is the same name: masked whole, replacing partial findings."""
    for name in [f for f in kept if f.label == "NAME"]:
        m = _BRACKETED.match(text, name.end) or _SLASHED.match(text, name.end)
        if m and (m.re is _BRACKETED or re.match("[ぁ-ヴ]", m.group(1)) or all(map(is_romaji, m.group(1).split()))):
            start, end = m.span(1)
            kept = [f for f in kept if not (f.start < end and start < f.end)]
            kept.append(name._replace(start=start, end=end))
    return kept


def _script(char: str) -> str | None:
    return next((s for s in _SCRIPTS if re.fullmatch(s, char)), None)


def _standalone(text: str, start: int, end: int) -> bool:
    """No letter of the same script glued on either side: 千葉 in 千葉さん, not in 千葉県; Ken, not Kenta."""
    first, last = _script(text[start]), _script(text[end - 1])
    before = start > 0 and first is not None and re.fullmatch(first, text[start - 1])
    after = end < len(text) and last is not None and re.fullmatch(last, text[end])
    return not before and not after


def _mentions(text: str, names: list) -> list[tuple[object, str, bool]]:
    """``(finding, string, is_surname)``: each found name, then its parts of two or more characters, longest first.
    Hiragana is left out (ゆかり, あかり are also everyday words)."""
    out = []
    for f in names:
        whole = text[f.start : f.end]
        parts = re.split(r"[\s・]+", whole)
        out.append((f, whole, False))
        if len(parts) > 1:
            out += [(f, p, i == 0) for i, p in enumerate(parts) if len(p) >= 2]
    usable = [m for m in out if all(_script(c) for c in m[1] if not c.isspace() and c != "・")]
    return sorted(usable, key=lambda m: -len(m[1]))


def with_repeats(text: str, kept: list) -> list:
    """Every further standalone occurrence of a found name (or of its surname, its given name) is a NAME too."""
    taken = [(f.start, f.end) for f in kept]
    added = []
    for finding, mention, is_surname in _mentions(text, [f for f in kept if f.label == "NAME"]):
        for m in re.finditer(re.escape(mention), text):
            start, end = m.span()
            if any(s < end and start < e for s, e in taken) or not _standalone(text, start, end):
                continue
            given = re.compile(r"\s[ァ-ヴー]{2,8}(?![ァ-ヴー])").match(text, end) if is_surname else None
            if given and re.fullmatch(r"[ァ-ヴー]+", mention):
                end = given.end()
            taken.append((start, end))
            added.append(finding._replace(start=start, end=end))
    return kept + added
