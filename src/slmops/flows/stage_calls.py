"""How each stage calls its component: the ``run`` and input functions the registry (``stages.py``) names.

Usage:
    from slmops.flows import stage_calls as calls
    calls.prepare(ctx)          # what ``slmops stage prepare`` runs, once its cache key has missed

Each function takes the stage's ``Ctx`` and passes the resolved params and layout paths to its component, which
it imports only when called (a stage's code hash is its component's import closure, not this module's).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from pydantic import BaseModel

from slmops.config import DISTILL_METHODS, resolve_model_path
from slmops.flows.stage import Ctx, base_model
from slmops.io import load_jsonl


class Counts(BaseModel):
    counts: dict[str, int]


class Vocab(BaseModel):
    path: Path
    vocab_size: int


def sources(ctx: Ctx) -> list[Path]:
    return [ctx.root / s.path for s in ctx.params.data.sources().values()]


def local_base(ctx: Ctx) -> list[Path]:
    """The base model folder when it is local: it exists, or the demo build writes it (so dvc.yaml lists it
    whether or not the demo was built yet). A hub id is not an input."""
    base = Path(base_model(ctx))
    return [base] if base.exists() or base.resolve() == ctx.layout.student_base.resolve() else []


def demo_data(ctx: Ctx) -> BaseModel:
    from slmops.demo import write_data

    d, generator = ctx.params.demo, ctx.task.spec.demo_generator
    if generator is None:
        raise ValueError(f"task {ctx.task.name!r} names no demo_generator: the demo cannot make data for it")
    seed, out = ctx.params.project.seed, ctx.root / d.out_dir
    counts = write_data(generator, seed, d.n_seed, d.n_pool, d.n_test, out, **d.generator_options)
    return Counts(counts=counts)


def demo_tokenizer(ctx: Ctx) -> BaseModel:
    from slmops.demo import tokenizer

    out = tokenizer.run(
        ctx.params.demo.vocab_size,
        task=ctx.task,
        raw_dir=ctx.root / ctx.params.demo.out_dir,
        out_dir=ctx.layout.tokenizer,
    )
    return Vocab(path=out, vocab_size=ctx.params.demo.vocab_size)


def demo_student_base(ctx: Ctx) -> BaseModel:
    from slmops.demo.models import build_base

    p, layout = ctx.params, ctx.layout
    return build_base(
        p.demo,
        ctx.task,
        tokenizer_dir=layout.tokenizer,
        raw_dir=ctx.root / p.demo.out_dir,
        out_dir=layout.student_base,
        seed=p.project.seed,
    )


def prepare(ctx: Ctx) -> BaseModel:
    from slmops.data import prepare as data

    p = ctx.params
    if p.data.labelled is None:
        raise ValueError("data.labelled is not set: name your labelled file in params (see README)")
    return data.run(
        p.prepare,
        task=ctx.task,
        labelled=ctx.source(p.data.labelled),
        unlabelled=ctx.source(p.data.unlabelled),
        test=ctx.source(p.data.test),
        out_dir=ctx.layout.prepared,
        seed=p.project.seed,
        test_fraction=p.data.test_fraction,
        pii_cfg=p.pii,
    )


def harvest(ctx: Ctx) -> BaseModel:
    from slmops.loop import harvest

    prepared, log = ctx.layout.prepared, ctx.layout.inference_log
    return harvest.run(
        ctx.params.harvest,
        task=ctx.task,
        log=log,
        out_dir=ctx.layout.traffic,
        train=[prepared / "train.jsonl", prepared / "pool.jsonl"],
        eval_sets=[prepared / "test.jsonl"],
        pii_cfg=ctx.params.pii,
    )


def harvest_inputs(ctx: Ctx) -> list[Path]:
    """The inference log (created empty when there is none: no traffic yet is an empty log, so the cache key
    does not change when the server first writes to it, and DVC finds the dependency) and the prepared data."""
    log = ctx.layout.inference_log
    log.parent.mkdir(parents=True, exist_ok=True)
    log.touch(exist_ok=True)
    return [log] + [ctx.layout.prepared / f for f in ("train.jsonl", "pool.jsonl", "test.jsonl")]


def label_traffic(ctx: Ctx) -> BaseModel:
    from slmops.loop import label_traffic as traffic

    p = ctx.params
    return traffic.run(
        p.synthesize,
        p.loop,
        task=ctx.task,
        traffic_dir=ctx.layout.traffic,
        out_dir=ctx.layout.traffic_labelled,
        cache_path=ctx.layout.teacher_cache,
        near_dup_threshold=p.harvest.near_dup_threshold,
        pii_cfg=p.pii,
    )


def synthesize(ctx: Ctx) -> BaseModel:
    from slmops.synthesize import stage as synthesize

    prepared = ctx.layout.prepared
    return synthesize.run(
        ctx.params.synthesize,
        task=ctx.task,
        train=prepared / "train.jsonl",
        pool=prepared / "pool.jsonl",
        test=prepared / "test.jsonl",
        out_dir=ctx.layout.synthetic,
        cache_path=ctx.layout.teacher_cache,
        seed=ctx.params.project.seed,
        traffic=ctx.layout.traffic_labelled / "train.jsonl",
        recent=ctx.layout.traffic_labelled / "recent.jsonl",
        traffic_repeat=ctx.params.loop.traffic_repeat,
        pii_cfg=ctx.params.pii,
    )


def finetune(ctx: Ctx) -> BaseModel:
    from slmops.train import finetune, launch

    p, layout = ctx.params, ctx.layout
    paths = {"train": layout.synthetic / "train.jsonl", "val": layout.prepared / "val.jsonl"}
    paths |= {"base_model": base_model(ctx), "out_dir": layout.student, "seed": p.project.seed}
    shutil.rmtree(layout.student / "active", ignore_errors=True)  # an earlier run's rounds are not this one's
    if p.finetune.processes > 1:  # accelerate launch: N ranks, rank 0 saves
        result = launch.run(p.finetune, task_ref=p.task, root=ctx.root, **paths)
    else:
        result = finetune.run(p.finetune, task=ctx.task, teacher=distill_teacher(ctx), **paths)
    if not p.active.rounds:
        return result
    from slmops.train import active  # rounds on the student just written (issue 22): teacher calls, retraining

    inputs = [r["input"] for path in active_inputs(ctx) if path.exists() for r in load_jsonl(path)]
    extra = {"teacher": distill_teacher(ctx), "cache_path": layout.teacher_cache, "pii_cfg": p.pii}
    return active.run(p.active, p.synthesize, p.finetune, task=ctx.task, test_inputs=inputs, **extra, **paths)


def distill_teacher(ctx: Ctx):
    """The local teacher whose token distributions ``finetune.method: gkd | kd`` learns (its folder resolved
    under the work dir); None for the SFT methods, which learn from the synthesized rows alone."""
    teacher = ctx.params.synthesize.teacher
    if ctx.params.finetune.method not in DISTILL_METHODS or teacher.kind != "transformers":
        return None
    return teacher.model_copy(update={"model": resolve_model_path(teacher.model, ctx.root)})


def finetune_inputs(ctx: Ctx) -> list[Path]:
    """The training rows, the validation rows, the local base and, when distilling, the local teacher."""
    layout, teacher = ctx.layout, distill_teacher(ctx)
    local_teacher = [Path(teacher.model)] if teacher is not None and Path(teacher.model).exists() else []
    rows = [layout.synthetic / "train.jsonl", layout.prepared / "val.jsonl"]
    return rows + local_base(ctx) + local_teacher + active_inputs(ctx)


def active_inputs(ctx: Ctx) -> list[Path]:
    """With active rounds: the test inputs the teacher's new ones must not come near (as in synthesize)."""
    if not ctx.params.active.rounds:
        return []
    return [ctx.layout.prepared / "test.jsonl", ctx.layout.traffic_labelled / "recent.jsonl"]


def active_when(ctx: Ctx) -> tuple[str, ...]:
    """With active rounds finetune also calls the teacher: synthesize's keys and PII's. None at ``rounds: 0``, so
    a profile without rounds keeps its cache key (and dvc.yaml)."""
    return ("active", "synthesize", "pii") if ctx.params.active.rounds else ()


def quantize(ctx: Ctx) -> BaseModel:
    from slmops.export import quantize

    return quantize.run(ctx.params.quantize, model_dir=ctx.layout.student, out_dir=ctx.layout.student_onnx)


def evaluate(ctx: Ctx) -> BaseModel:
    import json

    from slmops.evaluate import stage as evaluate
    from slmops.io import flatten

    p, layout = ctx.params, ctx.layout
    quantized = {form: layout.student_onnx / form for form in p.quantize.forms}
    result = evaluate.run_models(
        p.evaluate,
        task=ctx.task,
        test=layout.prepared / "test.jsonl",
        student=layout.student,
        quantized=quantized,
        teacher=p.synthesize.teacher if p.evaluate.evaluate_teacher else None,
        out_dir=layout.reports / "eval",
    )
    recent = ctx.layout.traffic_labelled / "recent.jsonl"
    if recent.exists() and recent.stat().st_size:  # the served forms on recent traffic, beside the gold set
        on_recent = evaluate.run_models(
            p.evaluate, task=ctx.task, test=recent, quantized=quantized, out_dir=layout.reports / "eval" / "recent"
        )
        result.metrics |= {f"recent_{name}": values for name, values in on_recent.metrics.items()}
    metrics_file(ctx).write_text(json.dumps(flatten(result.metrics), indent=1))  # for `dvc exp show`
    return result


def metrics_file(ctx: Ctx) -> Path:
    return ctx.layout.reports / "metrics.json"


def parity(ctx: Ctx) -> BaseModel:
    from slmops.evaluate import parity
    from slmops.serve.app import serve_in_background

    p, layout = ctx.params, ctx.layout
    return parity.run(
        ctx.task,
        test=layout.prepared / "test.jsonl",
        base_model=base_model(ctx),
        student=layout.student,
        onnx_fp32=layout.student_onnx / "fp32",
        quantized={form: layout.student_onnx / form for form in p.quantize.forms},
        out_dir=layout.reports / "parity",
        serve=serve_in_background,
        max_tokens=p.evaluate.max_new_tokens,
    )
