"""PII masking: precision and recall per entity type on a hand-written set, new masker vs the old regex one,
plus speed on the serving path (one inquiry at a time) and in batch (prepare).

Usage:
    .venv/bin/python benchmarks/pii.py                  # all figures (~2 min on 2 cores)
    .venv/bin/python benchmarks/pii.py --errors         # also list every miss and false positive
    .venv/bin/python benchmarks/pii.py --no-speed --data benchmarks/data/pii_heldout3.jsonl   # a held-out set

The set (``benchmarks/data/pii_eval.jsonl``, written by hand, none of it from the demo generator): one case a line,
``{"id", "text", "pii": [[LABEL, substring], ...], "tags": [lang, width, ...]}``. Gold spans are found by searching
each substring (NFKC-normalised, like the text) left to right, so a repeated value is listed once per occurrence.
``keep-*`` cases (or cases tagged ``keep``) have no PII: everything in them must survive. Label conventions: NAME
without the honorific (``[NAME]様``); ADDRESS from the first place name through block, building and room, the postal
code apart; a city or ward alone is not an address;
POSTAL, BANK_ACCOUNT and DRIVER_LICENSE are the digits only (no 〒, 第…号).

Scoring: a gold entity is found when predicted spans of its label cover all of its non-space characters; a
predicted span is correct when it overlaps a gold span of its label. ``leak`` counts gold entities with a character
left unmasked by any label (what matters for privacy; a wrong type still hides the data).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections import defaultdict
from pathlib import Path

from slmops.config.project import example_dir
from slmops.text import pii
from slmops.text.pii import legacy

DATA = Path(__file__).parent / "data" / "pii_eval.jsonl"
STRUCTURED = ("PHONE", "EMAIL", "CARD", "MYNUMBER", "POSTAL", "BANK_ACCOUNT", "PASSPORT", "DRIVER_LICENSE")
FREE_TEXT = ("NAME", "ADDRESS")


def load_cases(path: Path = DATA) -> list[dict]:
    cases = []
    for line in path.read_text(encoding="utf-8").splitlines():
        case = json.loads(line)
        text = pii.normalize(case["text"])
        gold, cursor = [], defaultdict(int)
        for label, value in case["pii"]:
            value = pii.normalize(value)
            start = text.find(value, cursor[value])
            if start < 0:
                raise ValueError(f"{case['id']}: {value!r} not in {text!r}")
            cursor[value] = start + len(value)
            gold.append((label, start, start + len(value)))
        cases.append({**case, "norm": text, "gold": gold})
    return cases


def score(cases: list[dict], predict) -> dict:
    """Per label: gold, found, predicted, correct, leaked; plus the list of errors."""
    stats = defaultdict(lambda: defaultdict(int))
    errors = []
    for case in cases:
        text, gold, pred = case["norm"], case["gold"], predict(case["text"])
        for label, start, end in gold:
            same = {i for lab, s, e in pred if lab == label for i in range(s, e)}
            anything = {i for _, s, e in pred for i in range(s, e)}
            chars = [i for i in range(start, end) if not text[i].isspace()]
            stats[label]["gold"] += 1
            stats[label]["found"] += all(i in same for i in chars)
            stats[label]["leaked"] += not all(i in anything for i in chars)
            if not all(i in same for i in chars):
                errors.append((case["id"], "miss", label, text[start:end], _shown(text, pred)))
        for label, start, end in pred:
            stats[label]["predicted"] += 1
            ok = any(lab == label and s < end and start < e for lab, s, e in gold)
            stats[label]["correct"] += ok
            if not ok:
                errors.append((case["id"], "false+", label, text[start:end], _shown(text, pred)))
    return {"stats": stats, "errors": errors}


def _shown(text: str, pred) -> str:
    for label, start, end in sorted(pred, key=lambda p: -p[1]):
        text = text[:start] + f"[{label}]" + text[end:]
    return text


def _ratio(a: int, b: int) -> str:
    return f"{a / b:.3f}" if b else "  -  "


def table(results: dict[str, dict], labels: list[str]) -> None:
    names = list(results)
    print(f"{'entity':<15}{'n':>4}  " + "  ".join(f"{n + ' R':>12}{n + ' P':>12}" for n in names))
    groups = {"structured": STRUCTURED, "names+addr": FREE_TEXT, "all": tuple(labels)}
    for label in [*labels, *groups]:
        members = groups.get(label, (label,))
        row = []
        for name in names:
            st = results[name]["stats"]
            g, f = sum(st[x]["gold"] for x in members), sum(st[x]["found"] for x in members)
            p, c = sum(st[x]["predicted"] for x in members), sum(st[x]["correct"] for x in members)
            row.append(f"{_ratio(f, g):>12}{_ratio(c, p):>12}")
        n = sum(results[names[0]]["stats"][x]["gold"] for x in members)
        print(f"{label:<15}{n:>4}  " + "  ".join(row))
    for name in names:
        st = results[name]["stats"]
        leaked = sum(v["leaked"] for v in st.values())
        print(f"{name}: {leaked} gold entities with a character left unmasked (any label)")


def must_survive(cases: list[dict], predict) -> tuple[int, int]:
    keep = [c for c in cases if c["id"].startswith("keep-") or "keep" in c.get("tags", ())]
    return sum(not predict(c["text"]) for c in keep), len(keep)


def inquiries(cases: list[dict], size: int = 200) -> list[str]:
    """~200-character inquiries made by joining consecutive cases of the set."""
    out, current = [], ""
    for case in cases:
        current += case["text"] + " "
        if len(current) >= size:
            out.append(current[:size])
            current = ""
    return out


def latency(texts: list[str], fn, repeat: int = 3) -> tuple[float, float]:
    for t in texts[:5]:
        fn(t)
    times = []
    for _ in range(repeat):
        for t in texts:
            start = time.perf_counter()
            fn(t)
            times.append((time.perf_counter() - start) * 1000)
    q = statistics.quantiles(times, n=20)
    return statistics.median(times), q[18]


def throughput(texts: list[str], fn) -> float:
    start = time.perf_counter()
    fn(texts)
    return len(texts) / (time.perf_counter() - start)


def prepare_rows_per_s(texts: list[str], n: int = 1000) -> float:
    """The prepare stage's own reader and cleaner (``slmops.data.prepare.load_clean``) on n unlabelled rows."""
    import tempfile
    from collections import Counter

    from slmops.config import PrepareConfig, load_params
    from slmops.data.prepare import load_clean
    from slmops.tasks import load_task

    params = load_params("demo", project=example_dir("ticket_triage"))

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "pool.jsonl"
        rows = [{"id": str(i), "input": texts[i % len(texts)]} for i in range(n)]
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
        start = time.perf_counter()
        load_clean(
            path,
            PrepareConfig(max_chars=4000),
            load_task(params.task, example_dir("ticket_triage")),
            False,
            [],
            Counter(),
            params.pii,
        )
        return n / (time.perf_counter() - start)


def speed(cases: list[dict]) -> None:
    texts = inquiries(cases)
    answer = '{"category": "shipping", "priority": "high", "reply": "配送状況を確認し、担当者よりご連絡いたします。"}'
    print(f"\nspeed: {len(texts)} inquiries of 200 characters; latency of one mask() call, ms")
    modes = {
        "legacy regex": lambda t: legacy.mask(t),
        "fast (ner=False)": lambda t: pii.mask(t, ner=False),
        "full (ner=True)": lambda t: pii.mask(t, ner=True),
        # what the server adds per request: the inquiry and the answer, masked before the log row is written
        "serving log row": lambda t: (pii.mask(t, ner=False), pii.mask(answer, ner=False)),
    }
    for name, fn in modes.items():
        p50, p95 = latency(texts, fn)
        print(f"  {name:<18} p50 {p50:7.2f}   p95 {p95:7.2f}")
    rows = (texts * (1 + 300 // len(texts)))[:300]
    print(f"batch: {len(rows)} rows, rows/s")
    print(f"  {'legacy regex':<18} {throughput(rows, lambda r: [legacy.mask(t) for t in r]):8.0f}")
    print(f"  {'mask() per row':<18} {throughput(rows, lambda r: [pii.mask(t, ner=False) for t in r]):8.0f}")
    for ner in (False, True):
        name = f"mask_many ner={ner}"
        print(f"  {name:<18} {throughput(rows, lambda r, ner=ner: pii.mask_many(r, ner=ner)):8.0f}")
    print(f"  {'prepare (default)':<18} {prepare_rows_per_s(texts):8.0f}   (slmops.data.prepare.load_clean, 1000 rows)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--errors", action="store_true", help="list every miss and false positive")
    parser.add_argument("--no-speed", action="store_true")
    args = parser.parse_args()
    cases = load_cases(args.data)
    predictors = {
        "new": lambda t: [(f.label, f.start, f.end) for f in pii.analyze(t, ner=True)],
        "fast": lambda t: [(f.label, f.start, f.end) for f in pii.analyze(t, ner=False)],
        "legacy": legacy.spans,
    }
    results = {name: score(cases, fn) for name, fn in predictors.items()}
    labels = [*STRUCTURED, *FREE_TEXT]
    print(f"{len(cases)} cases, {sum(len(c['gold']) for c in cases)} gold entities; R = recall, P = precision")
    print("new = Presidio + GiNZA with its NER model (pii.ner: true); fast = the same without it (the default);")
    print("legacy = the old regex masker\n")
    table(results, labels)
    for name, fn in predictors.items():
        kept, total = must_survive(cases, fn)
        print(f"{name}: {kept}/{total} must-survive cases left untouched")
    if args.errors:
        for name in ("new", "fast"):
            print(f"\nerrors ({name}):")
            for err in results[name]["errors"]:
                print("  ", *err)
    if not args.no_speed:
        speed(cases)


if __name__ == "__main__":
    main()
