"""Mask personal data in Japanese (and English) text before it is stored, sent to a teacher, or logged.

Usage:
    echo "中村健一様の電話は（045）123-4567です" | slmops pii mask     # -> [NAME]様の電話は[PHONE]です
    slmops pii scan data/raw/*.jsonl                                  # exit 1 if anything looks like PII

Microsoft Presidio over GiNZA: text is NFKC-normalised (full-width digits, letters and ＠ become ASCII), analysed by
the recognizers in ``recognizers.py`` (structured formats, validated) and ``names.py`` (names and addresses), and
each finding is replaced by a typed placeholder: [NAME] [ADDRESS] [PHONE] [EMAIL] [CARD] [MYNUMBER] [POSTAL]
[BANK_ACCOUNT] [PASSPORT] [DRIVER_LICENSE]. What is looked for is ``params: pii`` (:class:`PIIConfig`).

Cost: the first call loads GiNZA (seconds, once per process); importing this module loads nothing heavy. Without
GiNZA's statistical NER model (the default: Sudachi's dictionary names, the address grammar and the patterns) a
200-character inquiry takes ~2.2 ms (p95, busy 2-core machine) and prepare runs ~580 rows/s; the NER model
(``pii.ner: true``) costs ~70 ms (p95) and 20 rows/s for a few more names on the held-out sets
(``benchmarks/pii.py``). So the server, which writes each inference-log row before it answers, always masks that
row with the fast pass (``ner=False``, ~2.9 ms p95 for input and answer): masking happens before the append, so
nothing unmasked is ever written, and the NER model is never on a request's critical path.
"""

from __future__ import annotations

import contextlib
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Iterator
from typing import NamedTuple

from slmops.config import PIIConfig
from slmops.text.pii.engine import ENTITIES, MAX_CHARS, PLACEHOLDERS, analyzer, anonymizer
from slmops.text.pii.mentions import with_readings, with_repeats

DEFAULT = PIIConfig()
LABELS = tuple(ENTITIES)
_PLACEHOLDER = re.compile(r"\[(?:" + "|".join(LABELS) + r")\]")


class Found(NamedTuple):
    label: str  # NAME, PHONE, …
    start: int  # offsets into normalize(text)
    end: int
    score: float
    text: str


def normalize(text: str) -> str:
    """Unicode NFKC: full-width ASCII to half-width, half-width katakana to full-width, etc."""
    return unicodedata.normalize("NFKC", text)


def _pieces(text: str) -> Iterable[tuple[int, str]]:
    """``(offset, piece)`` of at most MAX_CHARS, cut after a newline or 。 where there is one."""
    offset = 0
    while len(text) - offset > MAX_CHARS:
        window = text[offset : offset + MAX_CHARS]
        cut = max(window.rfind("\n"), window.rfind("。")) + 1 or MAX_CHARS
        yield offset, window[:cut]
        offset += cut
    yield offset, text[offset:]


def _resolve(text: str, results, offset: int = 0) -> list[Found]:
    """Overlaps go to the higher score, then the longer span; what a loser covers beyond the winner is still masked,
    as its own finding. Placeholders already in the text (``[PHONE]``) are not PII."""
    taken = [(m.start(), m.end()) for m in _PLACEHOLDER.finditer(text)]
    kept = []
    for r in sorted(results, key=lambda r: (-r.score, r.start - r.end, r.start)):
        for start, end in _uncovered(r.start, r.end, taken):
            start += len(text[start:end]) - len(text[start:end].lstrip())
            end -= len(text[start:end]) - len(text[start:end].rstrip())
            if re.search(r"\w", text[start:end]):
                taken.append((start, end))
                kept.append(Found(PLACEHOLDERS[r.entity_type], start, end, r.score, ""))
    kept = with_repeats(text, with_readings(text, kept))
    return sorted((f._replace(start=f.start + offset, end=f.end + offset) for f in kept), key=lambda f: f.start)


def _uncovered(start: int, end: int, taken: list[tuple[int, int]]) -> list[tuple[int, int]]:
    pieces = [(start, end)]
    for s, e in taken:
        pieces = [p for a, b in pieces for p in ((a, min(b, s)), (max(a, e), b)) if p[0] < p[1]]
    return pieces


def _analyze_kwargs(cfg: PIIConfig) -> dict:
    return {
        "language": "ja",
        "entities": [ENTITIES[label] for label in cfg.entities],
        "score_threshold": cfg.score_threshold,
        "allow_list": list(cfg.allow_list) or None,
    }


def analyze(text: str, cfg: PIIConfig | None = None, *, ner: bool | None = None) -> list[Found]:
    """What :func:`mask` would replace in ``normalize(text)``, in order, without overlaps (from memory inside
    :func:`remembering`)."""
    cfg = cfg or DEFAULT
    text, ner = normalize(text), cfg.ner if ner is None else ner
    if _remembered is None:  # a server's requests: no settings serialized, nothing kept
        return list(_scan(text, cfg, ner))
    key = (text, cfg.model_dump_json(), ner)
    if key not in _remembered:
        _remembered[key] = _scan(text, cfg, ner)
    return list(_remembered[key])


def _scan(text: str, cfg: PIIConfig, ner: bool) -> tuple[Found, ...]:
    engine = analyzer(ner)
    found = []
    for offset, piece in _pieces(text):
        found += _resolve(piece, engine.analyze(piece, **_analyze_kwargs(cfg)), offset)
    return tuple(f._replace(text=text[f.start : f.end]) for f in found)


_remembered: dict[tuple[str, str, bool], tuple[Found, ...]] | None = None


@contextlib.contextmanager
def remembering() -> Iterator[dict]:
    """Inside the block, :func:`analyze` answers a text it has scanned with the same settings from memory (the
    dict it yields). A batch stage masks what it sends, masks the answer, then scans the row again before writing
    it: the demo's synthesize stage scanned 41,186 times, 10,217 distinct texts. Forgotten when the outermost
    block ends, so no raw text outlives the stage; a server, which never enters one, keeps nothing."""
    global _remembered
    outer = _remembered
    _remembered = {} if outer is None else outer
    try:
        yield _remembered
    finally:
        _remembered = outer


def analyze_many(
    texts: list[str], cfg: PIIConfig | None = None, *, ner: bool | None = None, batch_size: int = 64
) -> list[list[Found]]:
    """:func:`analyze` for many texts at once: the spaCy pipeline runs over them in batches (``nlp.pipe``)."""
    cfg = cfg or DEFAULT
    engine = analyzer(cfg.ner if ner is None else ner)
    normalized = [normalize(t) for t in texts]
    short = [t for t in normalized if len(t) <= MAX_CHARS]
    artifacts = dict(engine.nlp_engine.process_batch(short, "ja", batch_size=batch_size))
    out = []
    for text in normalized:
        if text not in artifacts:
            out.append(analyze(text, cfg, ner=ner))
            continue
        results = engine.analyze(text, nlp_artifacts=artifacts[text], **_analyze_kwargs(cfg))
        out.append([f._replace(text=text[f.start : f.end]) for f in _resolve(text, results)])
    return out


def _replace(text: str, found: list[Found], counts: Counter[str] | None) -> str:
    from presidio_anonymizer.entities import OperatorConfig, RecognizerResult

    if counts is not None:
        counts.update(f.label for f in found)
    if not found:
        return text
    results = [RecognizerResult(ENTITIES[f.label], f.start, f.end, f.score) for f in found]
    operators = {ENTITIES[f.label]: OperatorConfig("replace", {"new_value": f"[{f.label}]"}) for f in found}
    return anonymizer().anonymize(text, results, operators=operators, merge_entities_with_spaces=False).text


def mask(
    text: str, counts: Counter[str] | None = None, cfg: PIIConfig | None = None, *, ner: bool | None = None
) -> str:
    """Return ``text`` NFKC-normalised with every PII finding replaced by ``[LABEL]``; ``counts`` gets +1 per label.

    ``ner`` overrides ``cfg.ner`` for one call (``False``: the fast path, dictionary names and patterns only).
    """
    return _replace(normalize(text), analyze(text, cfg, ner=ner), counts)


def mask_many(
    texts: list[str], counts: Counter[str] | None = None, cfg: PIIConfig | None = None, *, ner: bool | None = None
) -> list[str]:
    """:func:`mask` for a batch (prepare, harvest): one ``nlp.pipe`` pass instead of one call per text."""
    found = analyze_many(texts, cfg, ner=ner)
    return [_replace(normalize(text), f, counts) for text, f in zip(texts, found, strict=True)]


def find_pii(text: str, cfg: PIIConfig | None = None, *, ner: bool | None = None) -> list[tuple[str, str]]:
    """Every ``(label, match)`` still present in ``text`` (used to scan outputs and files for leaks)."""
    return [(f.label, f.text) for f in analyze(text, cfg, ner=ner)]
