"""The stage registry: every stage declared once, with its params keys, inputs, output folder and code.

Usage:
    slmops stage prepare --profile demo          # one stage, cached by content (what dvc.yaml runs)
    slmops dvc --profile demo                    # writes dvc.yaml + params.yaml from this registry

Each entry's ``run`` and input functions, which call its component, are in ``stage_calls.py``. The same
declaration drives the Prefect flows (``src/slmops/flows/pipeline.py`` runs ``PIPELINE``, ``slmops demo build``
runs ``DEMO``), the cache key, the generic stage command and ``dvc.yaml``; a test checks that the committed
``dvc.yaml`` is what this registry generates. A stage's cache key is the params it reads (dotted keys into
the resolved params, seed included), the content hashes of its inputs (not their paths) and the hash of
the code it runs: the import closure of its modules, computed (``codedeps.py``). A stage whose manifest
already holds that key, and
whose output files still match the hashes recorded when it ran, is reported "cached"; any changed or missing
output file makes it rerun, saying which.
"""

from __future__ import annotations

from slmops.flows import stage_calls as calls
from slmops.flows import summaries
from slmops.flows.stage import (
    Ctx,
    Stage,
    base_model,
    code_modules,
    input_paths,
    stage_code_hash,
    stage_params,
)

# Ctx, Stage and the code/input helpers live in stage.py; importable from here as before.
__all__ = [
    "DEMO",
    "PIPELINE",
    "STAGES",
    "Ctx",
    "Stage",
    "base_model",
    "code_modules",
    "input_paths",
    "stage_code_hash",
    "stage_params",
]


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
            run=calls.demo_data,
            summary=lambda r: summaries.join(r["counts"]),
        ),
        Stage(
            name="demo_tokenizer",
            params=("task", "demo.out_dir", "demo.vocab_size"),
            modules=("slmops.demo.tokenizer",),
            inputs=lambda ctx: [ctx.root / ctx.params.demo.out_dir],
            out=lambda ctx: ctx.layout.tokenizer,
            run=calls.demo_tokenizer,
            summary=lambda r: summaries.join({"vocab": r["vocab_size"]}),
        ),
        Stage(
            name="demo_student_base",
            params=("project.seed", "demo.out_dir", "demo.student", "demo.pretrain"),
            modules=("slmops.demo.models",),
            inputs=lambda ctx: [ctx.layout.tokenizer, ctx.root / ctx.params.demo.out_dir],
            out=lambda ctx: ctx.layout.student_base,
            run=calls.demo_student_base,
            summary=lambda r: summaries.join({"params": r["params"], "loss": r["final_loss"]}),
            artifacts=("loss_curve.png",),
        ),
        Stage(
            name="prepare",
            params=("project.seed", "task", "data", "prepare", "pii"),
            modules=("slmops.data.prepare",),
            inputs=calls.sources,
            out=lambda ctx: ctx.layout.prepared,
            run=calls.prepare,
            summary=summaries.prepare_summary,
            artifacts=("rejects.jsonl",),
            datasets=(("train.jsonl", "training"), ("val.jsonl", "validation"), ("test.jsonl", "evaluation")),
        ),
        Stage(
            name="harvest",
            params=("task", "harvest", "pii"),
            modules=("slmops.loop.harvest",),
            inputs=calls.harvest_inputs,
            out=lambda ctx: ctx.layout.traffic,
            run=calls.harvest,
            summary=summaries.harvest_summary,
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
            run=calls.label_traffic,
            summary=summaries.label_traffic_summary,
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
            run=calls.synthesize,
            summary=summaries.synthesize_summary,
            artifacts=("rejects.jsonl",),
            datasets=(("train.jsonl", "training"),),
        ),
        Stage(
            name="finetune",
            params=("project.seed", "task", "finetune", "loop.init_from"),
            params_when=lambda ctx: (
                (("synthesize.teacher.model",) if calls.distill_teacher(ctx) else ()) + calls.active_when(ctx)
            ),
            modules=("slmops.train.finetune", "slmops.train.launch"),
            modules_when=lambda ctx: ("slmops.train.active",) if ctx.params.active.rounds else (),
            inputs=calls.finetune_inputs,
            out=lambda ctx: ctx.layout.student,
            run=calls.finetune,
            summary=summaries.finetune_summary,
            artifacts=("loss_curve.png", "log_history.json"),
        ),
        Stage(
            name="quantize",
            params=("quantize",),
            modules=("slmops.export.quantize",),
            inputs=lambda ctx: [ctx.layout.student],
            out=lambda ctx: ctx.layout.student_onnx,
            run=calls.quantize,
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
            run=calls.evaluate,
            summary=summaries.evaluate_summary,
            artifacts=("metrics.json", "comparison.csv", "confusion_*.png"),
            metrics=calls.metrics_file,
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
                [ctx.layout.prepared / "test.jsonl", ctx.layout.student, ctx.layout.student_onnx]
                + calls.local_base(ctx)
            ),
            out=lambda ctx: ctx.layout.reports / "parity",
            run=calls.parity,
            summary=summaries.parity_summary,
            artifacts=("parity.json",),
        ),
    ]
}
DEMO = [STAGES[n] for n in ("demo_data", "demo_tokenizer", "demo_student_base")]
PIPELINE = [
    STAGES[n]
    for n in ("prepare", "harvest", "label_traffic", "synthesize", "finetune", "quantize", "evaluate", "parity")
]
