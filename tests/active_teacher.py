"""A scripted callable teacher for tests/test_active.py: it writes new inquiries naming the class asked for, and
labels an inquiry with the class it names. ``CALLS`` records every call that reached it (cache hits do not)."""

from __future__ import annotations

import hashlib
import json
import re

CALLS: list[tuple[str, str]] = []  # ("write" | "label", the user message)
KANA = "あいうえおかきくけこさしすせそたちつてとなにぬねのはひふへほまみむめもやゆよらりるれろわをん"
CATEGORIES = ("billing", "shipping", "account", "defect", "technical", "cancellation", "other")


def teach(messages: list[dict]) -> str:
    user = messages[-1]["content"]
    if user.startswith("Write one new"):
        CALLS.append(("write", user))
        category = re.search(r"of category (\w+)", user).group(1)
        digest = hashlib.sha256(user.encode()).digest()
        return f"{category}の件: " + "".join(KANA[b % len(KANA)] for b in digest[:24])
    CALLS.append(("label", user))
    category = next((c for c in CATEGORIES if c in user), "other")
    return json.dumps({"category": category, "priority": "high", "reply": "確認いたします。"}, ensure_ascii=False)
