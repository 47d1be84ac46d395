"""Drift benchmark: false alarms on in-distribution windows, power on shifted ones, time for a 10k-row window.

Usage:
    .venv/bin/python benchmarks/drift.py                 # 25 + 25 windows of 200 rows, then one of 10k rows
    .venv/bin/python benchmarks/drift.py --windows 5     # a quick look

Reference: 3,500 labelled demo inquiries (the generator's seed set), de-duplicated and PII-masked as the
prepare stage does. In-distribution traffic: new inquiries from the same generator (other seeds), masked as
the server logs them. Shifted traffic: inquiries written here, not by the generator: a new product line
(EV chargers, home batteries, smart locks, ...) and new complaint types (installation visits, rentals,
subsidies, data deletion, courier conduct), wrapped in the generator's greetings, urgency cues and closings,
so only what the customer talks about changes. "Mixed" windows carry 30% shifted rows.

The answers in the log are simulated (no model is trained here): in distribution the category is right 90%
of the time, on shifted rows 50% (otherwise "other"). Only the label signal depends on that assumption;
the semantic signal reads inputs only. Targets: power >= 95%, false alarms <= 5%, 10k rows <= 30 s.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
import warnings
from collections import Counter
from pathlib import Path

from slmops.config import MonitorConfig
from slmops.config.project import example_dir
from slmops.data.prepare import near_dup_key
from slmops.demo.generate import generate
from slmops.demo.world import CLOSINGS, GREETINGS, NAMES, URGENCY, gold_reply
from slmops.loop.monitor import assess, run
from slmops.tasks import load_task
from slmops.text import pii

NEW_PRODUCTS = [
    "EV充電器",
    "家庭用蓄電池",
    "ペット用自動給餌器",
    "スマートロック",
    "電動キックボード",
    "見守りカメラ",
    "ポータブル電源",
    "ビルトイン食洗機",
    "太陽光パネル",
    "電動アシスト自転車",
]
SHIFTED = {
    "defect": [
        "{p}のバッテリーが膨らんできて、使うのが怖いです。",
        "{p}を設置してから焦げたようなにおいがします。",
        "{p}の本体が夜中に勝手に再起動して警告音が鳴り続けます。",
    ],
    "technical": [
        "{p}の専用アプリで家族を招待しようとすると認証に失敗します。",
        "{p}のファームウェア更新が途中で止まり、起動しなくなりました。",
        "{p}が自宅のメッシュWi-Fiにつながらず、ずっとオフライン表示です。",
        "スマートスピーカーから{p}を操作できなくなりました。",
    ],
    "shipping": [
        "{p}の設置工事の日程がまだ決まらず、業者からも連絡がありません。",
        "大型の{p}なので室内まで搬入してほしかったのに、建物の外に置いていかれました。",
    ],
    "billing": [
        "{p}のレンタル料金が返却後も引き落とされています。",
        "{p}の分割払いの残高が、契約書の金額と合いません。",
        "自治体の補助金申請に使う{p}の領収書の書式が違うと言われました。",
    ],
    "cancellation": [
        "{p}のリース契約を途中で終えたいのですが、違約金はいくらですか。",
        "{p}の設置工事の予約を取り消したいです。",
    ],
    "account": [
        "{p}の管理者権限を、同居している家族に移したいです。",
        "退会した家族が{p}の解錠履歴を見られる状態のままです。",
    ],
    "other": [
        "配達員の方の言葉遣いが乱暴で、とても不快な思いをしました。",
        "御社が保有している私の個人情報をすべて消去してください。",
        "視覚障害があるので、{p}の取扱説明書を音声で聞ける形式でいただけますか。",
        "{p}の下取りキャンペーンの対象になる機種を教えてください。",
    ],
}
OPENINGS = ["", "", "{p}を導入しました。", "先月{p}を購入した者です。", "{p}のレンタルを利用中です。"]


def shifted_inquiry(rng: random.Random) -> dict:
    category = rng.choice(list(SHIFTED))
    priority = rng.choice(["urgent", "high", "medium", "low"])
    product = rng.choice(NEW_PRODUCTS)
    parts = [rng.choice(GREETINGS), rng.choice(OPENINGS), rng.choice(SHIFTED[category])]
    parts += [rng.choice(URGENCY[priority]), rng.choice(CLOSINGS)]
    text = "".join(p.format(p=product, name=rng.choice(NAMES)) for p in parts if p)
    return {"input": text, "expected": {"category": category, "priority": priority}}


def answered(rows: list[dict], right: float, rng: random.Random, start: int) -> list[dict]:
    """Log rows as the server writes them, with simulated answers right ``right`` of the time."""
    out = []
    for i, row in enumerate(rows):
        gold = row["expected"]
        category = gold["category"] if rng.random() < right else "other"
        answer = {"category": category, "priority": gold["priority"], "reply": gold_reply(category, gold["priority"])}
        out.append(
            {
                "id": f"chatcmpl-{start + i:08d}",
                "ts": f"2026-11-01T00:00:{(start + i) % 60:02d}.000+00:00",
                "status": 200,
                "served_by": "student",
                "fallback": None,
                "input": pii.mask(row["input"]),
                "output": json.dumps(answer, ensure_ascii=False),
            }
        )
    return out


def reference_rows(seed: int) -> list[dict]:
    seen, rows = set(), []
    for row in generate(seed, 3500, 1, 1)["seed"]:
        key = near_dup_key(row["input"])
        if key not in seen:
            seen.add(key)
            rows.append({"input": pii.mask(row["input"]), "expected": row["expected"]})
    return rows


def windows(kind: str, n: int, size: int, seed: int) -> list[list[dict]]:
    rng = random.Random(seed)
    out = []
    for w in range(n):
        normal = generate(seed * 1000 + w, 1, 1, size)["test"]
        shifted = [shifted_inquiry(rng) for _ in range(size)]
        k = {"in-distribution": 0, "mixed 30%": int(0.3 * size), "shifted": size}[kind]
        rows = answered(normal[: size - k], 0.9, rng, w * size) + answered(shifted[:k], 0.5, rng, w * size + size)
        rng.shuffle(rows)
        out.append(rows)
    return out


def main() -> None:
    warnings.filterwarnings("ignore", category=RuntimeWarning)  # Evidently on constant columns
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--windows", type=int, default=25)
    parser.add_argument("--size", type=int, default=200)
    args = parser.parse_args()
    task, cfg = load_task("ticket_triage", example_dir("ticket_triage")), MonitorConfig(window=args.size)
    reference = reference_rows(42)
    print(f"reference {len(reference)} rows; {args.windows} windows of {args.size} rows per kind")
    table: dict[str, Counter] = {}
    effects: dict[str, list[float]] = {}
    seconds = []
    for kind, seed in (("in-distribution", 7), ("shifted", 8), ("mixed 30%", 9)):
        counts: Counter = Counter()
        for rows in windows(kind, args.windows, args.size, seed):
            start = time.perf_counter()
            result = assess(cfg, task=task, reference=reference, current=rows)
            seconds.append(time.perf_counter() - start)
            counts["overall"] += result.drift_detected
            counts["tabular share"] += result.drift_share >= cfg.drift_share
            for signal in result.signals:
                counts[signal.name] += signal.drifted
                if signal.name == "semantic":
                    effects.setdefault(kind, []).append(signal.value)
        table[kind] = counts
    names = ["overall", "semantic", "label:category", "label:priority", "tabular share", "invalid_rate"]
    print(f"\n{'signal':<16}{'false alarms':>14}{'power':>10}{'power (30% mix)':>18}")
    for name in names:
        row = [table[k][name] / args.windows for k in ("in-distribution", "shifted", "mixed 30%")]
        print(f"{name:<16}{row[0]:>14.0%}{row[1]:>10.0%}{row[2]:>18.0%}")
    low, high = max(effects["in-distribution"]), min(effects["shifted"])
    print(f"\nsemantic effect (threshold {cfg.semantic_min_effect}): in-distribution max {low:.3f}, ", end="")
    print(f"shifted min {high:.3f}, 30% mix min {min(effects['mixed 30%']):.3f}")
    print(f"mean time per {args.size}-row window: {sum(seconds) / len(seconds):.2f} s")
    timed_10k(task, reference)


def timed_10k(task, reference: list[dict]) -> None:
    """``monitor.run`` on a 10k-row log with a 10k-row window: read, every signal, Evidently HTML report."""
    rows = [r for w in windows("in-distribution", 50, 200, 11) for r in w]
    with tempfile.TemporaryDirectory() as tmp:
        ref_path, log = Path(tmp) / "reference.jsonl", Path(tmp) / "inference.jsonl"
        ref_path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in reference))
        log.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
        start = time.perf_counter()
        result = run(MonitorConfig(window=10_000), task=task, reference=ref_path, log=log, out_dir=Path(tmp) / "m")
        elapsed = time.perf_counter() - start
    print(f"10k-row window ({result.rows_current} rows, HTML report included): {elapsed:.1f} s (target <= 30 s)")
    print(f"  its decision: drift={result.drift_detected} {result.drifted_columns}")


if __name__ == "__main__":
    main()
