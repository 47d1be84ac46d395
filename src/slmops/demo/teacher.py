"""The demo teacher: a rules/lexicon engine for the demo's support-inquiry triage task, exposed as ``kind: callable``.

Usage (params):
    synthesize.teacher: {kind: callable, target: "slmops.demo.teacher:answer", model: "demo-rules-v1"}
    python -c "from slmops.demo.teacher import answer; print(answer([{'role': 'user', 'content': '荷物が来ない'}]))"

It stands in for a big LLM: it knows more of the world than the student's seed data (a lexicon written from
support-domain knowledge, see ``lexicon.py``, and its own phrase and topic banks, see ``phrasebank.py`` and
``topics.py``), costs no training, and answers ~1,000 requests in well under a second.
Two request kinds, told apart by the messages:
- labelling (a system message with the task's instructions, or a bare inquiry): the task's JSON answer;
- self-instruct (``Write one new ... inquiry of category X. Example: ...``, optionally a last line
  ``Attributes: register=keigo, channel=mail, ...``): a new inquiry of that category, in that style;
- contrast (``Rewrite ... so that its category becomes X. Inquiry: ...``): the inquiry with its category's
  keywords swapped for X's (``rewrite_inquiry``).
Deterministic: the same messages always get the same answer.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import unicodedata
from pathlib import Path

from slmops.demo.lexicon import CATEGORY_KEYWORDS, NEGATED_URGENCY, PAST_CANCELLATION, PRIORITY_CUES, RISK_CUES
from slmops.demo.phrasebank import PROBLEMS, compose
from slmops.demo.styles import parse_attributes, restyle
from slmops.demo.world import gold_reply

CONTRAST_REQUEST = re.compile(r"its category becomes (?P<category>[a-z_]+)\.\s*Inquiry:\s*(?P<example>.*)", re.S)
AUGMENT_REQUEST = re.compile(r"inquiry of category (?P<category>[a-z_]+)\.\s*Example:\s*(?P<example>.*)", re.S)
NEGATION = re.compile(r"[^\s、。,.!?]{1,8}?(ではなく|じゃなく)")
FALLBACK_CATEGORY = "other"  # nothing recognised: the catch-all category, as a human triager would choose


def normalise(text: str) -> str:
    return unicodedata.normalize("NFKC", text).lower()


def category_scores(text: str) -> dict[str, float]:
    """Keyword score per category; a word negated by ではなく ("Aではなく B") does not count."""
    folded = NEGATION.sub(" ", normalise(text))
    scores = {c: sum(w for k, w in words.items() if k in folded) for c, words in CATEGORY_KEYWORDS.items()}
    if any(marker in folded for marker in PAST_CANCELLATION):
        scores["cancellation"] /= 2
    return scores


def classify(text: str) -> str:
    scores = category_scores(text)
    best = max(scores, key=lambda c: scores[c])  # ties go to the earlier category in CATEGORY_KEYWORDS
    return best if scores[best] > 0 else FALLBACK_CATEGORY


def priority(text: str) -> str:
    folded = normalise(text)
    negated = re.search(NEGATED_URGENCY, folded) is not None
    folded = re.sub(NEGATED_URGENCY, " ", folded)
    for level, cues in PRIORITY_CUES.items():
        if any(cue in folded for cue in cues):
            return level
    if negated:
        return "low"
    return "high" if any(cue in folded for cue in RISK_CUES) else "medium"


def label(text: str) -> dict[str, str]:
    category, level = classify(text), priority(text)
    return {"category": category, "priority": level, "reply": gold_reply(category, level)}


def write_inquiry(category: str, example: str, attributes: str = "") -> str:
    """A new inquiry of ``category`` from the phrase bank, never equal to ``example``, in the style the
    ``attributes`` line asks for (``register=keigo, channel=mail, ...``; see ``styles.py``)."""
    if category not in PROBLEMS:
        raise ValueError(f"unknown category {category!r}; known: {sorted(PROBLEMS)}")
    key = f"{category}\n{example}" + (f"\n{attributes}" if attributes else "")
    seed = int(hashlib.sha256(key.encode()).hexdigest()[:12], 16)
    text = compose(category, seed)
    text = text if text != example.strip() else compose(category, seed + 7)
    if not attributes:
        return text

    def fits(text_with_issue: str, issue: str) -> bool:  # another kind of issue, and the main one stays main
        return classify(issue) != category and classify(text_with_issue) == category

    return restyle(text, parse_attributes(attributes), seed, fits)


def rewrite_inquiry(category: str, example: str) -> str:
    """``example`` with each keyword of the category it has now replaced by a Japanese keyword of ``category``
    that decides it (weight 2 or more: the everyday words such as 料金 or 支払 as well as the strong ones), picked
    by a hash of the request: the smallest edit the lexicon knows of. An inquiry with no keyword comes back
    unchanged (the stage rejects it as a copy); one whose new word loses to a keyword left in it is rejected
    when the stage labels it again."""
    if category not in CATEGORY_KEYWORDS:
        raise ValueError(f"unknown category {category!r}; known: {sorted(CATEGORY_KEYWORDS)}")
    rng = random.Random(int(hashlib.sha256(f"{category}\n{example}".encode()).hexdigest()[:12], 16))
    # Longest first, then by the word: the order (and so each draw of ``rng``) must not depend on how this process
    # hashes strings (a set's iteration order varies with PYTHONHASHSEED; ties of length kept it).
    found = {k for k in CATEGORY_KEYWORDS.get(classify(example), {}) if k in example}
    words = sorted(found, key=lambda k: (-len(k), k))
    deciding = sorted(k for k, w in CATEGORY_KEYWORDS[category].items() if w >= 2 and not k.isascii())
    text = example
    for word in words:
        if word in text:
            text = text.replace(word, rng.choice(deciding))
    return text


def answer(messages: list[dict]) -> str:
    """Answer one chat request: the task JSON for a labelling request, a new inquiry for a self-instruct one."""
    users = [m.get("content", "") for m in messages if m.get("role") == "user"]
    if not users:
        raise ValueError("no user message to answer")
    has_system = any(m.get("role") == "system" for m in messages)
    contrast = CONTRAST_REQUEST.search(users[-1])
    if contrast and not has_system:
        return rewrite_inquiry(contrast["category"], contrast["example"].strip())
    request = AUGMENT_REQUEST.search(users[-1])
    if request and not has_system:
        example, _, attributes = request["example"].partition("\nAttributes: ")
        return write_inquiry(request["category"], example, attributes.strip())
    return json.dumps(label(users[-1]), ensure_ascii=False)


def version() -> str:
    """Hash of the rules (this module, the lexicon, the phrase bank, the reply templates): the callable
    teacher appends it to ``model``, so a changed rule set never reuses cached answers."""
    here = Path(__file__).parent
    sources = ("teacher.py", "lexicon.py", "phrasebank.py", "topics.py", "generate.py", "world.py", "styles.py")
    return hashlib.sha256(b"".join((here / name).read_bytes() for name in sources)).hexdigest()[:12]


answer.version = version  # type: ignore[attr-defined]
