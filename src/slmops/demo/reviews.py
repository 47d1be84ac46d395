"""A second demo task's data: Japanese product reviews -> star rating, aspects discussed, one-line summary.

Usage:
    slmops demo build --profile smoke-reviews     # the spec params/tasks/review_insights.yaml names `generate`

Reviews are composed from per-aspect phrases, each positive or negative; the rating follows the balance of
the two. ``teacher`` is this demo's stand-in teacher (``synthesize.teacher: {kind: callable, target:
slmops.demo.reviews:teacher}``): it reads the same phrase lexicon, so it is an oracle on this data. The
second task shows that a task needs only a spec and data; it is not a test of distillation quality.
"""

from __future__ import annotations

import json
import random

PHRASES: dict[str, dict[str, list[str]]] = {
    "price": {
        "+": ["この値段なら大満足です。", "コスパが最高です。", "セールで安く買えました。"],
        "-": ["値段の割に物足りません。", "少し高すぎると思います。", "価格に見合っていません。"],
    },
    "quality": {
        "+": ["作りがしっかりしています。", "品質はとても良いです。", "素材に高級感があります。"],
        "-": ["すぐに壊れてしまいました。", "縫製が雑でした。", "品質にばらつきがあります。"],
    },
    "delivery": {
        "+": ["翌日に届きました。", "梱包が丁寧でした。", "配送がとても早かったです。"],
        "-": ["届くまで二週間かかりました。", "箱がつぶれて届きました。", "配送が遅すぎます。"],
    },
    "support": {
        "+": ["問い合わせへの対応が親切でした。", "サポートの返信が早かったです。"],
        "-": ["サポートに電話がつながりません。", "問い合わせの返事がありません。"],
    },
    "usability": {
        "+": ["操作が直感的で使いやすいです。", "設定が簡単でした。"],
        "-": ["説明書が分かりにくいです。", "操作が複雑で戸惑いました。"],
    },
    "design": {
        "+": ["見た目がおしゃれです。", "色がきれいで気に入りました。"],
        "-": ["デザインが写真と違いました。", "色がくすんでいます。"],
    },
}
ASPECT_JA = {
    "price": "価格",
    "quality": "品質",
    "delivery": "配送",
    "support": "サポート",
    "usability": "使いやすさ",
    "design": "デザイン",
}
PRODUCTS = ["ワイヤレスイヤホン", "電気ケトル", "リュック", "スマートウォッチ", "加湿器", "デスクライト", "水筒"]
OPENERS = [
    "",
    "",
    "{product}を購入しました。",
    "{product}を一か月使った感想です。",
    "家族へのプレゼントに{product}を買いました。",
]


def rating(sentiments: dict[str, str]) -> int:
    """1-5 stars from the share of positive aspects."""
    positive = sum(s == "+" for s in sentiments.values()) / len(sentiments)
    return 1 + round(positive * 4)


def summary(sentiments: dict[str, str]) -> str:
    good = [ASPECT_JA[a] for a, s in sentiments.items() if s == "+"]
    bad = [ASPECT_JA[a] for a, s in sentiments.items() if s == "-"]
    parts = ([f"{'・'.join(good)}に満足"] if good else []) + ([f"{'・'.join(bad)}に不満"] if bad else [])
    return "、".join(parts) + "。"


def make_review(rng: random.Random) -> dict:
    aspects = sorted(rng.sample(sorted(PHRASES), rng.randint(1, 3)))
    sentiments = {a: rng.choice("+-") for a in aspects}
    parts = [rng.choice(OPENERS).format(product=rng.choice(PRODUCTS))]
    parts += [rng.choice(PHRASES[a][s]) for a, s in sentiments.items()]
    return {
        "review": "".join(parts),
        "rating": rating(sentiments),
        "aspects": aspects,
        "summary": summary(sentiments),
    }


def generate(seed: int, n_seed: int, n_pool: int, n_test: int, n_corpus: int = 0) -> dict[str, list[dict]]:
    """``{"seed", "pool", "test"}`` rows with flat columns (review, rating, aspects, summary), inputs unique.

    ``n_corpus`` adds ``corpus``: unlabelled reviews, the general text a hub model was pretrained on (the
    demo's base model pretrains on it; no stage trains or evaluates on it)."""
    rng, seen, sets = random.Random(seed), set(), {}
    for name, size in (("test", n_test), ("seed", n_seed), ("pool", n_pool), ("corpus", n_corpus)):
        rows: list[dict] = []
        while len(rows) < size:
            row = make_review(rng)
            if row["review"] not in seen:
                seen.add(row["review"])
                rows.append({"id": f"{name}-{len(rows):05d}", **row})
        sets[name] = rows
    for name in ("pool", "corpus"):
        sets[name] = [{"id": r["id"], "review": r["review"]} for r in sets[name]]
    if not n_corpus:
        del sets["corpus"]
    return sets


def teacher(messages: list[dict]) -> str:
    """The demo teacher for this task: the phrase lexicon read back (an oracle on generated reviews)."""
    text = next(m["content"] for m in reversed(messages) if m["role"] == "user")
    sentiments = {a: s for a, by in PHRASES.items() for s, phrases in by.items() if any(p in text for p in phrases)}
    if not sentiments:
        return json.dumps({"rating": 3, "aspects": [], "summary": "特記事項なし。"}, ensure_ascii=False)
    aspects = sorted(sentiments)
    return json.dumps(
        {"rating": rating(sentiments), "aspects": aspects, "summary": summary({a: sentiments[a] for a in aspects})},
        ensure_ascii=False,
    )
