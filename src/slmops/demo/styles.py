"""How the demo teacher honours the attributes of a self-instruct request (``Attributes: register=keigo, ...``).

Usage:
    from slmops.demo.styles import parse_attributes, restyle
    restyle("荷物が届きません。", parse_attributes("register=keigo, channel=mail, noise=typos"), seed=7)
    # -> "件名: お問い合わせの件\\nいつも大変お世話になっております。荷物が届きまません。何卒よろしく…"

Rules a person writing in that register, channel or with that noise would follow, kept small: an LLM teacher
does this from the prompt alone. Unknown attributes and values are ignored, as an LLM would ignore them.
Deterministic: the same text, attributes and seed give the same result.
"""

from __future__ import annotations

import re
from collections.abc import Callable

HIRAGANA = re.compile(r"[ぁ-ゖ]")
REGISTER = {
    "plain": ("", "よろしく。"),
    "polite": ("", "よろしくお願いします。"),
    "keigo": ("いつも大変お世話になっております。", "何卒よろしくお願い申し上げます。"),
}
KEIGO = (("してください", "していただけますでしょうか"), ("ください。", "くださいませ。"), ("です。", "でございます。"))
PLAIN = (("すみません。", "ごめん。"), ("ですか。", "？"), ("ません。", "ない。"), ("です。", "。"))
CHANNEL = {"mail": "件名: お問い合わせの件\n", "form": "【お問い合わせ内容】", "chat": ""}
LONG = "先週から何度か試しましたが、状況は変わりません。必要な情報があればお知らせください。"
ENGLISH = " Could you check this? Thanks."
SECOND_ISSUES = (  # a smaller, second issue, each of another kind
    "ついでに、年末年始の営業時間も教えてください。",
    "あと、領収書の宛名も変えられますか。",
    "それと、登録メールアドレスも変更したいです。",
    "あと、アプリの通知が来ないのも気になっています。",
)


def parse_attributes(line: str) -> dict[str, str]:
    """``"register=keigo, channel=mail"`` -> ``{"register": "keigo", "channel": "mail"}``."""
    pairs = (part.split("=", 1) for part in line.split(",") if "=" in part)
    return {name.strip(): value.strip() for name, value in pairs}


def _typo(text: str, seed: int) -> str:
    """One slip of the keyboard: a hiragana typed twice."""
    spots = [m.start() for m in HIRAGANA.finditer(text)]
    if not spots:
        return text
    i = spots[seed % len(spots)]
    return text[: i + 1] + text[i] + text[i + 1 :]


def _width(text: str) -> str:
    """Full-width letters and digits, half-width Japanese punctuation: a mix IMEs and old forms produce."""
    full = "".join(chr(ord(c) + 0xFEE0) if c.isascii() and c.isalnum() else c for c in text)
    return full.replace("。", "｡").replace("、", "､")


def _register(text: str, register: str | None) -> str:
    swaps = KEIGO if register == "keigo" else PLAIN if register == "plain" else ()
    for old, new in swaps:
        text = text.replace(old, new)
    opening, closing = REGISTER.get(register or "", ("", ""))
    return opening + text + closing


def restyle(
    text: str, attributes: dict[str, str], seed: int, fits: Callable[[str, str], bool] = lambda text, issue: True
) -> str:
    """``text`` rewritten for its register, length, channel and noise. ``fits(text_with_issue, issue)`` says
    whether a second issue is another kind and leaves the first the main one; the first that fits (in seeded
    order) is added, else none."""
    text = _register(text, attributes.get("register"))
    if attributes.get("length") == "long":
        text += LONG
    noise = attributes.get("noise")
    if noise == "two_issues":
        order = SECOND_ISSUES[seed % len(SECOND_ISSUES) :] + SECOND_ISSUES[: seed % len(SECOND_ISSUES)]
        text += next((issue for issue in order if fits(text + issue, issue)), "")
    elif noise == "english":
        text += ENGLISH
    elif noise == "typos":
        text = _typo(text, seed)
    elif noise == "width":
        text = _width(text)
    return CHANNEL.get(attributes.get("channel", ""), "") + text
