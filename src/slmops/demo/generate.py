"""Seeded generator of Japanese customer-support inquiries (the demo task's data): gold seed set, unlabelled
pool, gold test set.

Usage:
    slmops demo build --profile demo      # the task spec names this generator (demo_generator)

Inquiries are composed from independent parts (greeting, context with random slots, a category-specific
problem, optional PII contact line, an urgency cue, a closing), so texts vary enough that no test input
appears word for word in any training input; ``overlap_report`` checks that. A few exact duplicates and
full-width characters are planted on purpose so the prepare stage has real work to do.
"""

from __future__ import annotations

import random

from slmops.demo.phrasebank import compose
from slmops.demo.styles import restyle
from slmops.demo.world import (
    CITIES,
    CLOSINGS,
    CONTEXTS,
    GREETINGS,
    NAMES,
    PRIORITY_WEIGHTS,
    PROBLEMS,
    PRODUCTS,
    SERVICES,
    URGENCY,
    gold_reply,
)


def _pii_line(rng: random.Random) -> str:
    n = rng.randint
    kind = rng.choice(["phone", "mobile", "email", "address", "card", "mynumber"])
    if kind == "phone":
        return f"連絡先は0{n(3, 9)}-{n(1000, 9999)}-{n(1000, 9999)}です。"
    if kind == "mobile":
        number = f"0{rng.choice('789')}0-{n(1000, 9999)}-{n(1000, 9999)}"
        return "携帯:" + (
            number.translate(str.maketrans("0123456789-", "０１２３４５６７８９－")) if n(0, 1) else number
        )
    if kind == "email":
        return f"メールは{rng.choice(['taro', 'hanako', 'k.sato', 'info'])}{n(1, 99)}@example.co.jp までお願いします。"
    if kind == "address":
        pref, city = rng.choice(CITIES)
        return f"住所は〒{n(100, 999)}-{n(1000, 9999)} {pref}{city}{n(1, 5)}-{n(1, 20)}-{n(1, 30)}です。"
    if kind == "card":
        return f"カード番号 {n(4000, 4999)}-{n(1000, 9999)}-{n(1000, 9999)}-{n(1000, 9999)} の件です。"
    return f"マイナンバーは{n(1000, 9999)} {n(1000, 9999)} {n(1000, 9999)}です。"


def make_inquiry(rng: random.Random, category: str, phrasing_share: float = 1.0, shifted: bool = False) -> dict:
    """One inquiry of ``category``; its problem sentence is drawn from the first ``phrasing_share`` of the
    category's phrasings (1.0: all of them), or with ``shifted`` from the rest of them."""
    cut = max(1, round(len(PROBLEMS[category]) * phrasing_share))
    problems = PROBLEMS[category][cut:] if shifted and cut < len(PROBLEMS[category]) else PROBLEMS[category][:cut]
    priority = rng.choices(["urgent", "high", "medium", "low"], weights=PRIORITY_WEIGHTS[category])[0]
    slots = {
        "product": rng.choice(PRODUCTS),
        "service": rng.choice(SERVICES),
        "name": rng.choice(NAMES),
        "date": f"{rng.randint(1, 12)}月{rng.randint(1, 28)}日",
        "order": f"A{rng.randint(10000000, 99999999)}",
        "member": f"M{rng.randint(100000, 999999)}",
        "amount": f"{rng.randint(5, 300) * 100:,}",
        "code": f"E{rng.randint(100, 999)}",
    }
    parts = [rng.choice(GREETINGS), rng.choice(CONTEXTS), rng.choice(problems)]
    if rng.random() < 0.3:
        parts.append(_pii_line(rng))
    parts += [rng.choice(URGENCY[priority]), rng.choice(CLOSINGS)]
    text = ""
    for part in (p.format(**slots) for p in parts if p):
        text += (" " if text and text[-1].isascii() and text[-1] not in " :" else "") + part
    if rng.random() < 0.05:  # some users type full-width ASCII; NFKC in prepare folds it back
        text = text.translate(
            str.maketrans(
                "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ",
                "０１２３４５６７８９ＡＢＣＤＥＦＧＨＩＪＫＬＭＮＯＰＱＲＳＴＵＶＷＸＹＺ",
            )
        )
    return {
        "input": text,
        "expected": {"category": category, "priority": priority, "reply": gold_reply(category, priority)},
    }


def generate(
    seed: int,
    n_seed: int,
    n_pool: int,
    n_test: int,
    seed_phrasing_share: float = 1.0,
    phrasing_share: float = 1.0,
    shifted: bool = False,
    n_corpus: int = 0,
    n_teacher_corpus: int = 0,
) -> dict[str, list[dict]]:
    """Return ``{"seed": [...], "pool": [...], "test": [...]}`` with inputs unique across all three sets.

    ``phrasing_share`` < 1 is the world at launch: every set uses only that share of each category's
    phrasings, and ``shifted=True`` draws the sets from the other phrasings instead (what traffic brings
    later; the loop demo sends it). ``seed_phrasing_share`` < 1 narrows the gold seed set further, within the
    launch world: only the teacher's labels on the pool can teach the student the rest. ``n_corpus`` adds
    ``corpus``: unlabelled inquiries from the whole world, the general text a hub model was pretrained on (the
    demo's base model pretrains on it; no stage trains or evaluates on it). ``n_teacher_corpus`` adds to it
    inquiries the teacher writes (``teacher_corpus``): the wider language of the domain a hub model has read."""
    rng = random.Random(seed)
    categories = list(PROBLEMS)
    seen: set[str] = set()
    sets: dict[str, list[dict]] = {}
    for name, size in (("test", n_test), ("seed", n_seed), ("pool", n_pool)):
        rows: list[dict] = []
        while len(rows) < size:
            share = phrasing_share * (seed_phrasing_share if name == "seed" and not shifted else 1.0)
            row = make_inquiry(rng, categories[len(rows) % len(categories)], share, shifted)
            if row["input"] in seen:
                continue
            seen.add(row["input"])
            rows.append({"id": f"{name}-{len(rows):05d}", **row})
        rng.shuffle(rows)
        sets[name] = rows
    corpus: list[dict] = []
    while len(corpus) < n_corpus:
        row = make_inquiry(rng, categories[len(corpus) % len(categories)])
        if row["input"] not in seen:
            seen.add(row["input"])
            corpus.append({"id": f"corpus-{len(corpus):05d}", "input": row["input"]})
    corpus += teacher_corpus(rng, categories, n_teacher_corpus, seen)
    if corpus:
        sets["corpus"] = corpus
    for row in sets["pool"]:  # the pool is unlabelled: the teacher labels it
        del row["expected"]
    # Plant exact duplicates (~2%) inside the training-side files for prepare to remove.
    for name in ("seed", "pool") if n_seed and n_pool else ():
        extra = [dict(r, id=r["id"] + "-dup") for r in rng.sample(sets[name], max(1, len(sets[name]) // 50))]
        sets[name] += extra
    return sets


def teacher_corpus(rng: random.Random, categories: list[str], n: int, seen: set[str]) -> list[dict]:
    """``n`` unlabelled inquiries in the teacher's own words (its topic bank, in random registers, channels and
    lengths), none equal to a row in ``seen``."""
    rows: list[dict] = []
    while len(rows) < n:
        attributes = {
            "register": rng.choice(("plain", "polite", "keigo")),
            "channel": rng.choice(("mail", "form", "chat")),
        }
        attributes["length"] = rng.choice(("short", "long"))
        text = restyle(
            compose(categories[len(rows) % len(categories)], rng.getrandbits(48)), attributes, rng.getrandbits(16)
        )
        if text not in seen:
            seen.add(text)
            rows.append({"id": f"corpus-t-{len(rows):05d}", "input": text})
    return rows


def overlap_report(sets: dict[str, list[dict]]) -> dict[str, float]:
    """Share of test inputs that appear word for word in the seed or pool inputs (must be 0)."""
    train = {r["input"] for r in sets["seed"]} | {r["input"] for r in sets["pool"]}
    test = [r["input"] for r in sets["test"]]
    return {"test_in_train_exact": sum(t in train for t in test) / max(1, len(test))}
