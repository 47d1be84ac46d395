"""The stage registry: every stage declared once, with its params keys, inputs, output folder and code.

Usage:
    slmops stage prepare --profile demo          # one stage, cached by content (what dvc.yaml runs)
    slmops dvc --profile demo                    # writes dvc.yaml + params.yaml from this registry

The same declaration drives the Prefect flows (``src/slmops/flows/pipeline.py`` runs ``PIPELINE``, ``slmops demo build``
runs ``DEMO``), the cache key, the generic stage command and ``dvc.yaml``; a test checks that the committed
``dvc.yaml`` is what this registry generates. A stage's cache key is the params it reads (dotted keys into
the resolved params, seed included), the content hashes of its inputs (not their paths) and the hash of
the code it runs: the import closure of its modules, computed (``codedeps.py``). A stage whose manifest
already holds that key, and
whose output files still match the hashes recorded when it ran, is reported "cached"; any changed or missing
output file makes it rerun, saying which.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from slmops.config import DISTILL_METHODS, Layout, Params, SourceConfig, resolve_model_path
from slmops.config.project import use_project
from slmops.flows.codedeps import code_hash
from slmops.tasks import Task, load_task, spec_path

COMMON_MODULES = ("slmops.config", "slmops.io")  # every stage reads params and writes a manifest


@dataclass(frozen=True)
class Ctx:
    """What a stage needs to find its inputs: the resolved params and the work dir."""

    params: Params
    root: Path

    def __post_init__(self) -> None:
        use_project(self.root)  # the team's own modules (a callable teacher, a Task class), in any process

    @cached_property
    def task(self) -> Task:
        return load_task(self.params.task, self.root)

    @property
    def layout(self) -> Layout:
        return Layout(root=self.root)

    def source(self, src: SourceConfig | None) -> SourceConfig | None:
        """A data source with its path made absolute under the work dir."""
        return None if src is None else src.model_copy(update={"path": str(self.root / src.path)})


@dataclass(frozen=True)
class Stage:
    name: str
    params: tuple[str, ...]  # dotted keys of the resolved params the stage reads
    modules: tuple[str, ...]  # the modules it runs: their import closure is its code (COMMON_MODULES too)
    inputs: Callable[[Ctx], list[Path]]
    out: Callable[[Ctx], Path]  # the output folder; its manifest.json records the cache key and output hashes
    run: Callable[[Ctx], BaseModel]
    summary: Callable[[dict[str, Any]], str]  # the figure that matters, for the console line
    artifacts: tuple[str, ...] = field(default=())  # files (globs) of the output folder logged to MLflow
    datasets: tuple[tuple[str, str], ...] = field(default=())  # (file in the output folder, MLflow input context)
    metrics: Callable[[Ctx], Path] | None = None  # a flat metrics file for `dvc metrics` / `dvc exp show`
    persist: bool = False  # the output grows across runs (append-only): DVC must not delete it before a run
    params_when: Callable[[Ctx], tuple[str, ...]] = lambda ctx: ()  # keys read only under some params


def stage_params(stage: Stage, ctx: Ctx) -> tuple[str, ...]:
    """The dotted params keys the stage reads under these params (the cache key's and dvc.yaml's)."""
    return stage.params + stage.params_when(ctx)


def code_modules(stage: Stage, ctx: Ctx) -> list[str]:
    """The modules whose import closure is the stage's code: its own, the shared ones, and the task class,
    callable teacher or demo generator the params name (in the package or the team's project)."""
    modules = [*COMMON_MODULES, *stage.modules]
    if "task" in stage.params and ":" in ctx.params.task:
        modules.append(ctx.params.task.partition(":")[0])
    teacher = ctx.params.synthesize.teacher
    if any(k.startswith("synthesize") for k in stage.params) and teacher.kind == "callable":
        modules.append(teacher.target.partition(":")[0])
    if stage.name == "demo_data" and ctx.task.spec.demo_generator:
        modules.append(ctx.task.spec.demo_generator.partition(":")[0])
    return modules


def stage_code_hash(stage: Stage, ctx: Ctx) -> str:
    """What the cache key and DVC's ``code.<stage>`` param hold for the stage's code."""
    return code_hash(code_modules(stage, ctx), roots=(ctx.root,))


def input_paths(stage: Stage, ctx: Ctx) -> list[Path]:
    """The stage's declared inputs plus the task spec file when it reads ``task``."""
    paths = stage.inputs(ctx)
    spec = spec_path(ctx.params.task, ctx.root) if "task" in stage.params else None
    return paths + ([spec] if spec is not None else [])


def _sources(ctx: Ctx) -> list[Path]:
    return [ctx.root / s.path for s in ctx.params.data.sources().values()]


def base_model(ctx: Ctx) -> str:
    """What finetune starts from: the champion's weights when ``loop.init_from: champion`` and a champion was
    kept (``Layout.champion``), else ``finetune.base_model`` (a local folder under the work dir, or a hub id)."""
    if ctx.params.loop.init_from == "champion" and (ctx.layout.champion / "config.json").exists():
        return str(ctx.layout.champion)
    return resolve_model_path(ctx.params.finetune.base_model, ctx.root)


def _local_base(ctx: Ctx) -> list[Path]:
    """The base model folder when it is local: it exists, or the demo build writes it (so dvc.yaml lists it
    whether or not the demo was built yet). A hub id is not an input."""
    base = Path(base_model(ctx))
    return [base] if base.exists() or base.resolve() == ctx.layout.student_base.resolve() else []


# ---------------------------------------------------------------- how each stage calls its component


def _demo_data(ctx: Ctx) -> BaseModel:
    from slmops.demo import write_data

    d, generator = ctx.params.demo, ctx.task.spec.demo_generator
    if generator is None:
        raise ValueError(f"task {ctx.task.name!r} names no demo_generator: the demo cannot make data for it")
    seed, out = ctx.params.project.seed, ctx.root / d.out_dir
    counts = write_data(generator, seed, d.n_seed, d.n_pool, d.n_test, out, **d.generator_options)
    return _Counts(counts=counts)


def _demo_tokenizer(ctx: Ctx) -> BaseModel:
    from slmops.demo import tokenizer

    out = tokenizer.run(
        ctx.params.demo.vocab_size,
        task=ctx.task,
        raw_dir=ctx.root / ctx.params.demo.out_dir,
        out_dir=ctx.layout.tokenizer,
    )
    return _Vocab(path=out, vocab_size=ctx.params.demo.vocab_size)


def _demo_student_base(ctx: Ctx) -> BaseModel:
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


def _prepare(ctx: Ctx) -> BaseModel:
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


def _harvest(ctx: Ctx) -> BaseModel:
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


def _harvest_inputs(ctx: Ctx) -> list[Path]:
    """The inference log (created empty when there is none: no traffic yet is an empty log, so the cache key
    does not change when the server first writes to it, and DVC finds the dependency) and the prepared data."""
    log = ctx.layout.inference_log
    log.parent.mkdir(parents=True, exist_ok=True)
    log.touch(exist_ok=True)
    return [log] + [ctx.layout.prepared / f for f in ("train.jsonl", "pool.jsonl", "test.jsonl")]


def _label_traffic(ctx: Ctx) -> BaseModel:
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


def _synthesize(ctx: Ctx) -> BaseModel:
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


def _finetune(ctx: Ctx) -> BaseModel:
    from slmops.train import finetune, launch

    p, layout = ctx.params, ctx.layout
    paths = {"train": layout.synthetic / "train.jsonl", "val": layout.prepared / "val.jsonl"}
    paths |= {"base_model": base_model(ctx), "out_dir": layout.student, "seed": p.project.seed}
    if p.finetune.processes > 1:  # accelerate launch: N ranks, rank 0 saves
        return launch.run(p.finetune, task_ref=p.task, root=ctx.root, **paths)
    return finetune.run(p.finetune, task=ctx.task, teacher=_distill_teacher(ctx), **paths)


def _distill_teacher(ctx: Ctx):
    """The local teacher whose token distributions ``finetune.method: gkd | kd`` learns (its folder resolved
    under the work dir); None for the SFT methods, which learn from the synthesized rows alone."""
    teacher = ctx.params.synthesize.teacher
    if ctx.params.finetune.method not in DISTILL_METHODS or teacher.kind != "transformers":
        return None
    return teacher.model_copy(update={"model": resolve_model_path(teacher.model, ctx.root)})


def _finetune_inputs(ctx: Ctx) -> list[Path]:
    """The training rows, the validation rows, the local base and, when distilling, the local teacher."""
    layout, teacher = ctx.layout, _distill_teacher(ctx)
    local_teacher = [Path(teacher.model)] if teacher is not None and Path(teacher.model).exists() else []
    return [layout.synthetic / "train.jsonl", layout.prepared / "val.jsonl"] + _local_base(ctx) + local_teacher


def _quantize(ctx: Ctx) -> BaseModel:
    from slmops.export import quantize

    return quantize.run(ctx.params.quantize, model_dir=ctx.layout.student, out_dir=ctx.layout.student_onnx)


def _evaluate(ctx: Ctx) -> BaseModel:
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
    _metrics_file(ctx).write_text(json.dumps(flatten(result.metrics), indent=1))  # for `dvc exp show`
    return result


def _metrics_file(ctx: Ctx) -> Path:
    return ctx.layout.reports / "metrics.json"


def _parity(ctx: Ctx) -> BaseModel:
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


def _parity_summary(r: dict) -> str:
    steps = r["figures"]["steps"]
    return " · ".join(f"{s['step']} {s['output_agreement']:.2f}/{s['label_agreement']:.2f}" for s in steps) + (
        "  (output/label agreement: each quantized form with onnx_fp32, the rest with the step before)"
    )


class _Counts(BaseModel):
    counts: dict[str, int]


class _Vocab(BaseModel):
    path: Path
    vocab_size: int


# ---------------------------------------------------------------- the figure each stage line shows


def _n(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) else f"{value:.3g}" if isinstance(value, float) else str(value)


def _join(parts: dict[str, Any]) -> str:
    return " · ".join(f"{k} {_n(v)}" for k, v in parts.items() if v is not None)


def _prepare_summary(r: dict) -> str:
    return _join(r["counts"] | {"rejected": sum(r["rejected"].values()), "PII masked": sum(r["pii_masked"].values())})


def _synthesize_summary(r: dict) -> str:
    accepted = r["counts"].get("teacher_label", 0) + r["counts"].get("teacher_augment", 0)
    parts = {"asked": r["counts"]["asked"], "accepted": accepted, "rejected": sum(r["rejected"].values())}
    filtered, coverage = sum(r.get("filtered", {}).values()), r.get("diversity", {}).get("coverage")
    parts |= {"of them filtered": filtered or None, "test coverage": coverage}
    return _join(parts | {"teacher calls": r["teacher_calls"], "cached": r["cache_hits"], "rows": r["counts"]["total"]})


def _finetune_summary(r: dict) -> str:
    parts = {"examples": r["train_examples"], "epochs": r.get("epochs"), "loss": r["final_train_loss"]}
    line = f"{r['method']} · " + _join(parts | {"eval loss": r["eval_loss"]})
    return line + ("  UNDER-TRAINED: see the WARNING above" if r.get("warning") else "")


def _harvest_summary(r: dict) -> str:
    parts = {"read": r["rows_read"], "selected": r["selected"], "batches": r["batches_total"]}
    return _join(parts | {"rows": r["rows_total"]}) + (f"  ({_join(r['by_reason'])})" if r["by_reason"] else "")


def _label_traffic_summary(r: dict) -> str:
    parts = {"harvested": r["harvested"], "labelled": r["labelled"], "rejected": sum(r["rejected"].values())}
    return _join(parts | {"teacher calls": r["teacher_calls"], "train": r["train_rows"], "recent": r["recent_rows"]})


def _evaluate_summary(r: dict) -> str:
    name, served = next(((k, v) for k, v in r["metrics"].items() if k.startswith("student_")), ("", {}))
    shown = [k for k in served if k not in ("n", "latency_p50_ms", "latency_p95_ms", "size_mb", "exact_match")][:3]
    line = f"{name} " + _join({k: served[k] for k in shown} | {"p95 ms": served.get("latency_p95_ms")})
    recent = r["metrics"].get(f"recent_{name}")
    headline = next((k for k in shown if k.endswith("_accuracy")), shown[0] if shown else None)
    return line + (f" · recent traffic {headline} {_n(recent[headline])}" if recent and headline else "")


STAGES: dict[str, Stage] = {
    s.name: s
    for s in [
        Stage(
            name="demo_data",
            params=(
                "project.seed",
                "task",
                "demo.n_seed",
                "demo.n_pool",
                "demo.n_test",
                "demo.out_dir",
                "demo.generator_options",
            ),
            modules=("slmops.demo",),
            inputs=lambda ctx: [],
            out=lambda ctx: ctx.root / ctx.params.demo.out_dir,
            run=_demo_data,
            summary=lambda r: _join(r["counts"]),
        ),
        Stage(
            name="demo_tokenizer",
            params=("task", "demo.out_dir", "demo.vocab_size"),
            modules=("slmops.demo.tokenizer",),
            inputs=lambda ctx: [ctx.root / ctx.params.demo.out_dir],
            out=lambda ctx: ctx.layout.tokenizer,
            run=_demo_tokenizer,
            summary=lambda r: _join({"vocab": r["vocab_size"]}),
        ),
        Stage(
            name="demo_student_base",
            params=("project.seed", "demo.out_dir", "demo.student", "demo.pretrain"),
            modules=("slmops.demo.models",),
            inputs=lambda ctx: [ctx.layout.tokenizer, ctx.root / ctx.params.demo.out_dir],
            out=lambda ctx: ctx.layout.student_base,
            run=_demo_student_base,
            summary=lambda r: _join({"params": r["params"], "loss": r["final_loss"]}),
            artifacts=("loss_curve.png",),
        ),
        Stage(
            name="prepare",
            params=("project.seed", "task", "data", "prepare", "pii"),
            modules=("slmops.data.prepare",),
            inputs=_sources,
            out=lambda ctx: ctx.layout.prepared,
            run=_prepare,
            summary=_prepare_summary,
            artifacts=("rejects.jsonl",),
            datasets=(("train.jsonl", "training"), ("val.jsonl", "validation"), ("test.jsonl", "evaluation")),
        ),
        Stage(
            name="harvest",
            params=("task", "harvest", "pii"),
            modules=("slmops.loop.harvest",),
            inputs=_harvest_inputs,
            out=lambda ctx: ctx.layout.traffic,
            run=_harvest,
            summary=_harvest_summary,
            persist=True,
        ),
        Stage(
            name="label_traffic",
            params=(
                "task",
                "synthesize.teacher",
                "synthesize.sampling",
                "loop.recent_eval_fraction",
                "loop.recent_eval_rows",
                "harvest.near_dup_threshold",
                "pii",
            ),
            modules=("slmops.loop.label_traffic",),
            inputs=lambda ctx: [ctx.layout.traffic],
            out=lambda ctx: ctx.layout.traffic_labelled,
            run=_label_traffic,
            summary=_label_traffic_summary,
            artifacts=("rejects.jsonl",),
            datasets=(("train.jsonl", "training"), ("recent.jsonl", "evaluation")),
        ),
        Stage(
            name="synthesize",
            params=("project.seed", "task", "synthesize", "loop.traffic_repeat", "pii"),
            modules=("slmops.synthesize.stage",),
            inputs=lambda ctx: (
                [ctx.layout.prepared / f for f in ("train.jsonl", "pool.jsonl", "test.jsonl")]
                + [ctx.layout.traffic_labelled / f for f in ("train.jsonl", "recent.jsonl")]
            ),
            out=lambda ctx: ctx.layout.synthetic,
            run=_synthesize,
            summary=_synthesize_summary,
            artifacts=("rejects.jsonl",),
            datasets=(("train.jsonl", "training"),),
        ),
        Stage(
            name="finetune",
            params=("project.seed", "task", "finetune", "loop.init_from"),
            params_when=lambda ctx: ("synthesize.teacher.model",) if _distill_teacher(ctx) else (),
            modules=("slmops.train.finetune", "slmops.train.launch"),
            inputs=_finetune_inputs,
            out=lambda ctx: ctx.layout.student,
            run=_finetune,
            summary=_finetune_summary,
            artifacts=("loss_curve.png", "log_history.json"),
        ),
        Stage(
            name="quantize",
            params=("quantize",),
            modules=("slmops.export.quantize",),
            inputs=lambda ctx: [ctx.layout.student],
            out=lambda ctx: ctx.layout.student_onnx,
            run=_quantize,
            summary=lambda r: f"fp32 {r['fp32_size_mb']:.2f} MB -> int8 {r['int8_size_mb']:.2f} MB",
        ),
        Stage(
            name="evaluate",
            params=("task", "evaluate", "synthesize.teacher", "quantize.weight_type", "quantize.candidates"),
            modules=("slmops.evaluate.stage",),
            inputs=lambda ctx: [
                ctx.layout.prepared / "test.jsonl",
                ctx.layout.traffic_labelled / "recent.jsonl",
                ctx.layout.student,
                ctx.layout.student_onnx,
            ],
            out=lambda ctx: ctx.layout.reports / "eval",
            run=_evaluate,
            summary=_evaluate_summary,
            artifacts=("metrics.json", "comparison.csv", "confusion_*.png"),
            metrics=_metrics_file,
        ),
        Stage(
            name="parity",
            params=(
                "task",
                "evaluate.max_new_tokens",
                "quantize.weight_type",
                "quantize.candidates",
                "finetune.base_model",
                "loop.init_from",
            ),
            modules=("slmops.evaluate.parity", "slmops.serve.app"),  # it serves each form through the app
            inputs=lambda ctx: (
                [ctx.layout.prepared / "test.jsonl", ctx.layout.student, ctx.layout.student_onnx] + _local_base(ctx)
            ),
            out=lambda ctx: ctx.layout.reports / "parity",
            run=_parity,
            summary=_parity_summary,
            artifacts=("parity.json",),
        ),
    ]
}
DEMO = [STAGES[n] for n in ("demo_data", "demo_tokenizer", "demo_student_base")]
PIPELINE = [
    STAGES[n]
    for n in ("prepare", "harvest", "label_traffic", "synthesize", "finetune", "quantize", "evaluate", "parity")
]
