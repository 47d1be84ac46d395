"""Teacher client benchmarks against a local OpenAI-compatible test server (loopback, no network).

Usage:
    .venv/bin/python -m benchmarks.teacher            # about 30 s on a 2-core CPU
    .venv/bin/python -m benchmarks.teacher --requests 960 --delay 0.2 --concurrency 16

1. Throughput: the server answers every request after ``--delay`` seconds and works on at most
   ``--concurrency`` (C) requests at once. The client runs with ``max_concurrency = C``. Ideal throughput
   is C / delay; the target is >= 80% of it.
2. Rerun over the same prompts with the same response cache: the target is 100% cache hits and >= 50x
   faster than the first run.
3. Fault injection through the whole synthesize stage: the server fails 20% of attempts with 429 or 500
   and returns malformed JSON for 5% of prompts. The stage must complete, every prompt must end up
   answered or rejected-and-counted, and nothing malformed may reach the training file.
The last line of output is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path

from slmops.config import OpenAITeacherConfig, SamplingConfig, SynthesizeConfig
from slmops.config.project import example_dir
from slmops.demo.generate import generate, make_inquiry
from slmops.io import load_jsonl, write_jsonl
from slmops.synthesize.stage import run as synthesize
from slmops.tasks import load_task
from slmops.teacher import open_teacher
from slmops.teacher.cache import ResponseCache, complete_cached
from tests.fake_teacher import FakeTeacher, label_json

task = load_task("ticket_triage", example_dir("ticket_triage"))  # the demo task these benchmarks drive


def throughput(n: int, delay: float, concurrency: int, work: Path) -> dict[str, float]:
    requests = [task.build_teacher_messages(f"ベンチマーク用の問い合わせ {i} 番です。") for i in range(n)]
    with FakeTeacher(lambda m, a: (200, label_json(), "stop", {}), delay_s=delay, capacity=concurrency) as fake:
        cfg = OpenAITeacherConfig(base_url=fake.base_url, model="bench", max_concurrency=concurrency)
        with open_teacher(cfg) as teacher:
            cache = ResponseCache(work / "cache.sqlite")
            start = time.perf_counter()
            first, _ = complete_cached(teacher, cache, "bench", requests, SamplingConfig())
            first_s = time.perf_counter() - start
            start = time.perf_counter()
            again, hits = complete_cached(teacher, cache, "bench", requests, SamplingConfig())
            again_s = time.perf_counter() - start
            cache.close()
    ideal = concurrency / delay
    achieved = n / first_s
    return {
        "requests": n,
        "errors": sum(r.error is not None for r in first),
        "ideal_rps": ideal,
        "achieved_rps": round(achieved, 1),
        "throughput_ratio": round(achieved / ideal, 3),
        "server_max_in_flight": fake.max_in_flight,
        "first_run_s": round(first_s, 3),
        "rerun_s": round(again_s, 4),
        "rerun_cache_hit_rate": hits / n,
        "rerun_speedup": round(first_s / again_s, 1),
    }


def faulty_script(fail_rate: float, malformed_rate: float):
    rng_for = lambda key: random.Random(key)  # noqa: E731 - deterministic per prompt (and attempt)

    def script(messages, attempt):
        text = messages[-1]["content"]
        if rng_for(f"{text}|{attempt}").random() < fail_rate:
            status = rng_for(f"{text}|{attempt}|status").choice([429, 500])
            return status, None, "stop", {"Retry-After": "0.2"} if status == 429 else {}
        if rng_for(f"{text}|malformed").random() < malformed_rate:
            return 200, '{"category": "billing", "priority": ', "stop", {}  # broken JSON, every attempt
        if text.startswith("Write one new"):
            category = text.split("category ")[1].split(".")[0]
            return 200, make_inquiry(rng_for(text), category)["input"], "stop", {}
        return 200, label_json(random.Random(text).choice(task.fields["category"].values)), "stop", {}

    return script


def fault_injection(n_pool: int, work: Path) -> dict[str, float]:
    sets = generate(7, 100, n_pool, 50)
    paths = {name: work / f"{name}.jsonl" for name in ("train", "pool", "test")}
    write_jsonl(paths["train"], sets["seed"])
    write_jsonl(paths["pool"], sets["pool"][:n_pool])
    write_jsonl(paths["test"], sets["test"])
    with FakeTeacher(faulty_script(0.2, 0.05)) as fake:
        teacher = OpenAITeacherConfig(base_url=fake.base_url, model="faulty", max_concurrency=16, max_retries=6)
        cfg = SynthesizeConfig(teacher=teacher, augment_per_category=10, max_class_share=1.0)
        start = time.perf_counter()
        result = synthesize(cfg, task=task, **paths, out_dir=work / "out", cache_path=work / "fault-cache.sqlite")
        seconds = time.perf_counter() - start
    teacher_rows = [r for r in load_jsonl(work / "out" / "train.jsonl") if r["source"] != "gold"]
    # Each pool prompt ends as one labelled row or one reject; each self-instruct ask as one new row or one
    # reject (of the new text, or of its label). So every prompt is accounted for when these add up.
    accounted = len(teacher_rows) + sum(result.rejected.values())
    return {
        "fault_prompts": result.counts["asked"],
        "fault_http_attempts": len(fake.calls),
        "fault_accepted": len(teacher_rows),
        "fault_rejected": dict(result.rejected),
        "fault_unaccounted": result.counts["asked"] - accounted,
        "fault_malformed_in_train": sum(not _valid(r["expected"]) for r in teacher_rows),
        "fault_stage_s": round(seconds, 2),
    }


def _valid(expected: dict) -> bool:
    try:
        task.Label.model_validate(expected)
    except ValueError:
        return False
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=800)
    parser.add_argument("--delay", type=float, default=0.2)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--fault-pool", type=int, default=600)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="slmops-bench-") as tmp:
        work = Path(tmp)
        figures = throughput(args.requests, args.delay, args.concurrency, work)
        print(
            f"throughput: {figures['achieved_rps']} req/s of ideal {figures['ideal_rps']:.0f} "
            f"(C={args.concurrency} / {args.delay * 1000:.0f} ms) = {figures['throughput_ratio']:.1%}  target >= 80%"
        )
        print(
            f"rerun: {figures['rerun_cache_hit_rate']:.0%} cache hits, {figures['first_run_s']:.2f} s -> "
            f"{figures['rerun_s']:.3f} s = {figures['rerun_speedup']}x faster  target 100%, >= 50x"
        )
        figures |= fault_injection(args.fault_pool, work)
        print(
            f"fault injection: {figures['fault_prompts']} prompts, {figures['fault_http_attempts']} HTTP attempts, "
            f"{figures['fault_accepted']} accepted, rejected {figures['fault_rejected']}, "
            f"unaccounted {figures['fault_unaccounted']}, malformed in train {figures['fault_malformed_in_train']}"
        )
    print(json.dumps(figures, ensure_ascii=False))


if __name__ == "__main__":
    main()
