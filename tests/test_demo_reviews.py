"""The review_insights demo's tokenizer: review phrases are made of shared pieces, not learnt whole.

Usage:
    .venv/bin/pytest -q tests/test_demo_reviews.py
"""

from __future__ import annotations

from slmops.config import load_params
from slmops.demo import tokenizer as demo_tokenizer
from slmops.demo import write_data
from slmops.demo.reviews import PHRASES
from slmops.tasks import load_task
from tests.projects import REVIEWS


def test_demo_tokenizer_splits_review_phrases_into_shared_pieces(tmp_path):
    """At 2,048 tokens the BPE learnt each of the 30 review phrases as one token, whose meaning the student had to
    learn from ~30 rows (rating accuracy 0.42); the demo profile's tokenizer must cut them into pieces."""
    from transformers import AutoTokenizer

    params = load_params("demo", project=REVIEWS)
    demo, task = params.demo, load_task(params.task, REVIEWS)
    raw = tmp_path / "raw"
    write_data(task.spec.demo_generator, params.project.seed, demo.n_seed, demo.n_pool, demo.n_test, raw)
    out = demo_tokenizer.run(demo.vocab_size, task=task, raw_dir=raw, out_dir=tmp_path / "tok")
    tokenizer = AutoTokenizer.from_pretrained(out)
    phrases = [p.rstrip("。") for by in PHRASES.values() for ps in by.values() for p in ps]
    pieces = {p: tokenizer.tokenize(p) for p in phrases}
    assert not [p for p, toks in pieces.items() if len(toks) == 1], "phrases learnt whole"
    shared = {t for p, toks in pieces.items() for t in toks if any(t in o for q, o in pieces.items() if q != p)}
    assert len(shared) >= 20  # pieces that recur in other phrases carry what one phrase teaches to the next
