"""The Presidio analyzer over GiNZA: built once per mode (with or without the NER model) and cached.

Usage:
    python -c "from slmops.text.pii.engine import analyzer; print(analyzer(False).get_recognizers('ja'))"

Two spaCy pipelines from the ``ja-ginza`` package (its model ships in the wheel; nothing is downloaded):
- ``ner=False``: SudachiPy tokenizer only (dictionary tags for names and places), ~1 ms per 200 characters;
- ``ner=True``: plus GiNZA's tok2vec + NER (the parser and the rest are left out), tens of ms per 200 characters.
GiNZA's labels are Sekine's extended named entities; ``GINZA_TO_PRESIDIO`` maps the ones that can be personal data,
every other label is ignored (dates, money, products, companies are kept in the text).
"""

from __future__ import annotations

import contextlib
import functools
import sys
import threading

# Presidio entity → the placeholder (and the label counted, reported and configured in params).
PLACEHOLDERS = {
    "PERSON": "NAME",
    "LOCATION": "ADDRESS",
    "PHONE_NUMBER": "PHONE",
    "EMAIL_ADDRESS": "EMAIL",
    "CREDIT_CARD": "CARD",
    "JP_MY_NUMBER": "MYNUMBER",
    "JP_POSTAL_CODE": "POSTAL",
    "JP_BANK_ACCOUNT": "BANK_ACCOUNT",
    "JP_PASSPORT": "PASSPORT",
    "JP_DRIVER_LICENSE": "DRIVER_LICENSE",
}
ENTITIES = {label: entity for entity, label in PLACEHOLDERS.items()}

# GiNZA (ENE) label → Presidio entity. Places are anchors for the address recognizer, never masked alone.
GINZA_TO_PRESIDIO = {
    "Person": "PERSON",
    "Province": "LOCATION",
    "City": "LOCATION",
    "County": "LOCATION",
    "GPE_Other": "LOCATION",
    "Postal_Address": "LOCATION",
}
_LEAVE_OUT = ["parser", "morphologizer", "compound_splitter", "bunsetu_recognizer"]
MAX_CHARS = 8000  # SudachiPy refuses inputs over 49,149 bytes; longer texts are analysed in pieces of this size


def load_nlp(ner: bool):
    import spacy

    return spacy.load("ja_ginza", exclude=_LEAVE_OUT if ner else [*_LEAVE_OUT, "tok2vec", "ner"])


def _nlp_engine(ner: bool):
    from presidio_analyzer.nlp_engine import NerModelConfiguration, SpacyNlpEngine

    class GinzaNlpEngine(SpacyNlpEngine):
        """Presidio's spaCy engine on an already-built GiNZA pipeline; one call at a time (SudachiPy's
        tokenizer is not safe to share between threads, and the server masks from a thread pool)."""

        def load(self) -> None:
            nlp = load_nlp(ner)
            labels = nlp.get_pipe("ner").labels if ner else ()
            self.ner_model_configuration.labels_to_ignore = [x for x in labels if x not in GINZA_TO_PRESIDIO]
            self.nlp = {"ja": nlp}
            self.lock = threading.Lock()

        def process_text(self, text: str, language: str):
            with self.lock:
                return super().process_text(text, language)

        def process_batch(self, texts, language: str, batch_size: int = 1, n_process: int = 1, as_tuples=False):
            with self.lock:
                yield from super().process_batch(texts, language, batch_size, n_process, as_tuples)

    config = NerModelConfiguration(model_to_presidio_entity_mapping=GINZA_TO_PRESIDIO, default_score=0.85)
    return GinzaNlpEngine(models=[{"lang_code": "ja", "model_name": "ja_ginza"}], ner_model_configuration=config)


@contextlib.contextmanager
def _without(*names: str):
    """While inside, ``import <name>`` raises ImportError for each name not imported yet (``sys.modules[name] =
    None``, Python's documented way to block an import); the names are released on the way out."""
    blocked = [n for n in names if n not in sys.modules]
    sys.modules.update(dict.fromkeys(blocked))
    try:
        yield
    finally:
        for name in blocked:
            if sys.modules.get(name, False) is None:
                del sys.modules[name]


@functools.cache
def analyzer(ner: bool):
    """The analyzer for one mode, loaded on first use (seconds) and kept for the process's life."""
    # presidio_analyzer's package imports its transformers NLP engine (transformers' pipelines, sklearn) and, through
    # spaCy's thinc, torch: ~10 s of start-up that GiNZA never uses (both treat ImportError as "not installed"). A
    # process that only masks (`slmops pii`, the harvester) skips them; one that already loaded them is unchanged.
    with _without("transformers", "torch"):
        import presidio_analyzer  # noqa: F401
    from presidio_analyzer import AnalyzerEngine, RecognizerRegistry
    from presidio_analyzer.context_aware_enhancers import ContextAwareEnhancer

    from slmops.text.pii.address import AddressRecognizer
    from slmops.text.pii.names import GinzaPersonRecognizer, PersonRecognizer, RomajiNameRecognizer
    from slmops.text.pii.recognizers import STRUCTURED

    class RecognizerContext(ContextAwareEnhancer):
        """Context is scored inside each recognizer (character windows suit Japanese better than lemmas)."""

        def __init__(self) -> None:
            super().__init__(0.0, 0.0, context_prefix_count=0, context_suffix_count=0)

        def enhance_using_context(self, text, raw_results, nlp_artifacts, recognizers, context=None):
            return raw_results

    registry = RecognizerRegistry(supported_languages=["ja"])
    for recognizer in [*(cls() for cls in STRUCTURED), PersonRecognizer(), RomajiNameRecognizer(), AddressRecognizer()]:
        registry.add_recognizer(recognizer)
    if ner:
        registry.add_recognizer(GinzaPersonRecognizer())
    return AnalyzerEngine(
        registry=registry,
        nlp_engine=_nlp_engine(ner),
        supported_languages=["ja"],
        context_aware_enhancer=RecognizerContext(),
    )


@functools.cache
def anonymizer():
    from presidio_anonymizer import AnonymizerEngine

    return AnonymizerEngine()
