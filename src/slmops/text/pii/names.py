"""Recognizers for personal names: Sudachi's dictionary tags, titles and name-field labels, GiNZA's NER.

Usage:
    python -c "from slmops.text.pii import find_pii; print(find_pii('中村健一様とEmily Clark様'))"

GiNZA's tokenizer is SudachiPy, whose dictionary tags given names and surnames (``名詞-固有名詞-人名-姓/名``,
katakana and some romaji included) and place names (``名詞-固有名詞-地名``, used by ``address.py``). That is a fast
dictionary NER (about a millisecond for 200 characters); GiNZA's statistical NER adds names the
dictionary lacks, at tens of milliseconds (see ``engine.py``). Placeholders never include an honorific:
``中村様`` → ``[NAME]様``.
"""

from __future__ import annotations

import re

from presidio_analyzer import EntityRecognizer, RecognizerResult

HONORIFICS = ("様", "さま", "さん", "氏", "殿", "君", "くん", "ちゃん", "先生", "san", "-san", "sama")
# A title after a surname makes it a person's (高橋部長): job titles as used in Japanese business mail.
TITLES = ("部長", "課長", "係長", "社長", "専務", "常務", "主任", "店長", "支店長", "室長", "教授", "医師", "弁護士")
# Form and mail labels that introduce a name: 氏名：…, 名義人 …, From: …, Name: …
NAME_FIELDS = (
    "氏名", "名前", "名義", "受取人", "契約者", "申込者", "担当", "宛名", "差出人", "ご依頼主", "依頼者",
    "連絡先", "宛先", "送り主", "紹介者", "代理人", "保証人", "利用者", "購入者", "会員名", "署名",
    "夫の", "妻の", "息子の", "娘の", "父の", "母の", "兄の", "姉の", "弟の", "妹の", "主人の", "家内の",
    "mr", "ms", "mrs", "miss", "dr", "dear", "name is", "name:", "from:", "i'm", "i am", "this is", "regards",
    "attn", "contact", "behalf of", "signed by",
)  # fmt: skip
NAME_CONTEXT_AFTER = ("と申します", "と申し", "です", "より", "宛")

# ---------------------------------------------------------------- person


def make_result(recognizer: EntityRecognizer, entity: str, start: int, end: int, score: float) -> RecognizerResult:
    metadata = {
        RecognizerResult.RECOGNIZER_NAME_KEY: recognizer.name,
        RecognizerResult.RECOGNIZER_IDENTIFIER_KEY: recognizer.id,
        RecognizerResult.IS_SCORE_ENHANCED_BY_CONTEXT_KEY: True,
    }
    return RecognizerResult(entity, start, end, score, recognition_metadata=metadata)


def _is_place_token(token) -> bool:
    """Many surnames are also place names (上野, 原田, ミヤザキ): Sudachi may tag them 地名; an honorific decides."""
    return "固有名詞-地名" in token.tag_ and (len(token.text) <= 3 or _KATAKANA.fullmatch(token.text) is not None)


_KATAKANA = re.compile(r"[ァ-ヴー]{2,}")
_JOINERS = ("・", "･", "=")  # イトウ・ハナコ, and the = of some forms: the name goes on across them


def _name_mask(doc) -> list[bool]:
    """Which tokens belong to a name: Sudachi 人名 tokens, plus a katakana 固有名詞 beside one (ナカジマ・リョウ:
    Sudachi knows リョウ as a given name but ナカジマ only as a proper noun)."""
    named = [_is_name_token(t) for t in doc]
    for i, t in enumerate(doc):
        if named[i] or "固有名詞" not in t.tag_ or not _KATAKANA.fullmatch(t.text):
            continue
        for j in (i - 2, i + 2) if not t.whitespace_ else (i + 1,):
            step = doc[min(i, j) + 1] if abs(j - i) == 2 and 0 <= j < len(doc) else None
            joined = step is None or step.text in _JOINERS
            if 0 <= j < len(doc) and named[j] and joined and _KATAKANA.fullmatch(doc[j].text):
                named[i] = True
    for j in range(1, len(doc)):
        if doc[j].tag_.endswith("人名-名") and not named[j - 1] and _surname_before_given(doc[j - 1], doc[j]):
            named[j - 1] = True
    return named


def _surname_before_given(token, given) -> bool:
    """A word right before a given name that the dictionary knows otherwise: a place (千葉 健太, 長野美咲) or, in
    katakana, a common noun (カワノ ミサキ)."""
    if re.fullmatch(r"[一-龯々]{1,3}", token.text) and re.fullmatch(r"[一-龯々]+", given.text):
        return "固有名詞-地名" in token.tag_
    if _KATAKANA.fullmatch(token.text) and _KATAKANA.fullmatch(given.text) and len(token.text) <= 6:
        return token.whitespace_ and token.tag_.startswith("名詞")
    return False


def _run_end(doc, named: list[bool], i: int) -> int:
    """The end of the name run starting at token ``i``: name tokens, across ・ joiners, and adjacent capitalised
    romaji words when the run is romaji."""
    end = i + 1
    while end < len(doc):
        if named[end] or (_is_latin_word(doc[end]) and doc[i].is_ascii):
            end += 1
        elif doc[end].text in _JOINERS and end + 1 < len(doc) and named[end + 1]:
            end += 2
        else:
            break
    return end


def _kanji_tail(doc, end: int) -> bool:
    """松尾優斗: the dictionary tags 優 as a given name but 斗 as a counter. One more lone kanji that ends the word
    (no kanji after it) and is no honorific or title belongs to the name."""
    if end >= len(doc) or not re.fullmatch(r"[一-龯々]", doc[end].text) or doc[end - 1].whitespace_:
        return False
    if not re.fullmatch(r"[一-龯々]{1,2}", doc[end - 1].text) or not doc[end - 1].tag_.endswith("名"):
        return False
    rest = doc[end + 1].text if end + 1 < len(doc) else ""
    return (
        not rest.startswith(HONORIFICS + TITLES)
        and not doc[end].text.startswith(HONORIFICS + TITLES)
        and not (re.match(r"[一-龯々]", rest))
    )


def _is_name_token(token) -> bool:
    """Sudachi tags it a name; romaji only when capitalised (it tags some English words, ``last``, as names)."""
    return "固有名詞-人名" in token.tag_ and not (token.is_ascii and not token.text[:1].isupper())


def _is_latin_word(token) -> bool:
    return bool(re.fullmatch(r"[A-Z][A-Za-z'\-]+", token.text))


class PersonRecognizer(EntityRecognizer):
    """Runs of Sudachi ``人名`` tokens (surname + given name, kanji/katakana/romaji), widened over adjacent
    capitalised romaji words. A full name is sure; a lone surname or given name needs an honorific after it or a
    context word (担当, Mr, Dear, と申します …) beside it."""

    FULL_SCORE = 0.85
    LONE_SCORE = 0.4

    def __init__(self) -> None:
        super().__init__(supported_entities=["PERSON"], supported_language="ja", name="PersonRecognizer")

    def load(self) -> None:
        pass

    def analyze(self, text, entities, nlp_artifacts=None) -> list[RecognizerResult]:
        if nlp_artifacts is None or nlp_artifacts.tokens is None:
            return []
        doc = nlp_artifacts.tokens
        named = _name_mask(doc)
        results, i = [], 0
        while i < len(doc):
            if _is_place_token(doc[i]) and has_name_context(text, doc[i].idx, doc[i].idx + len(doc[i].text), True):
                results.append(make_result(self, "PERSON", doc[i].idx, doc[i].idx + len(doc[i].text), 0.7))
            if not named[i]:
                i += 1
                continue
            start, end = i, _run_end(doc, named, i)
            if end == i + 1 and _given_name_after(doc, i):  # 近藤 誠: the dictionary did not tag 誠
                end += 1
            elif _kanji_tail(doc, end):
                end += 1
            while start > 0 and _is_latin_word(doc[start - 1]) and doc[i].is_ascii:
                start -= 1
            span = doc[start:end]
            score = self.FULL_SCORE if len(span) >= 2 else self.LONE_SCORE
            if score < self.FULL_SCORE and self._has_context(text, span.start_char, span.end_char):
                score = self.FULL_SCORE
            results.append(make_result(self, "PERSON", span.start_char, span.end_char, score))
            i = end
        return results

    @staticmethod
    def _has_context(text: str, start: int, end: int) -> bool:
        return has_name_context(text, start, end)


def has_name_context(text: str, start: int, end: int, after_only: bool = False) -> bool:
    """An honorific, title or と申します right after the span; unless ``after_only`` (a place name that may be a
    surname: 大阪です is not a person), also です/より after it or a name label shortly before it."""
    after = text[end : end + 6].lstrip().lower()
    before = text[max(0, start - 12) : start].lower()
    if after.startswith(HONORIFICS + TITLES + ("と申します", "と申し")):
        return True
    return not after_only and (after.startswith(NAME_CONTEXT_AFTER) or any(w in before for w in NAME_FIELDS))


def _given_name_after(doc, i: int) -> bool:
    """A surname, a space, then 1-3 kanji (or 2-5 katakana) standing alone: a given name the dictionary lacks.
    A hiragana given name (丸山 ゆかり, 山本あかり) may follow with or without the space."""
    token = doc[i]
    if not token.tag_.endswith("姓") or i + 1 >= len(doc):
        return False
    nxt = doc[i + 1]
    follows = doc[i + 2].text if i + 2 < len(doc) else ""
    if _hiragana_given_name(nxt, doc[i + 2] if i + 2 < len(doc) else None):
        return True
    if not token.whitespace_:
        return False
    if re.fullmatch(r"[ァ-ヴー]{2,5}", nxt.text):
        return not re.match(r"[ァ-ヴー]", follows)
    return bool(re.fullmatch(r"[一-龯々]{1,3}", nxt.text)) and not re.match(r"[一-龯々]", follows)


def _hiragana_given_name(token, follows) -> bool:
    """2-4 hiragana that Sudachi reads as a noun (ゆかり, あかり: it knows them as words, not names), standing alone:
    then a particle, auxiliary, honorific, punctuation or nothing; never a particle itself (鈴木 から)."""
    if not re.fullmatch(r"[ぁ-ゖ]{2,4}", token.text) or not token.tag_.startswith("名詞"):
        return False
    if follows is None or token.whitespace_:
        return True
    return follows.tag_.startswith(("助詞", "助動詞", "接尾辞", "補助記号")) or follows.text.startswith(HONORIFICS)


class RomajiNameRecognizer(EntityRecognizer):
    """Romaji and English names the dictionary does not know, when a title or honorific says it is a name:
    ``Mr. Tanaka Hiroshi``, ``Emily Clark様``, ``Dear Ms. Kato``, ``My name is …``."""

    TITLE = r"(?:Mr|Ms|Mrs|Miss|Dr|Prof)\.?"
    # Field labels of bilingual forms (氏名 Name: …) are not names themselves.
    NOT_NAME = r"(?:Name|Full|Family|Given|First|Last|From|To|Email|Mail|Tel|Phone|Address|Date|Subject|Account)"
    # O'Neil, Smith-Jones
    WORD = rf"(?!(?:{TITLE}|{NOT_NAME})\b)(?:(?:[A-Z]')?[A-Z][a-z]+(?:[\-'][A-Z]?[a-z]+)?|[A-Z]{{2,}})"
    NAME = rf"{WORD}(?: {WORD}){{0,2}}"
    KANA_NAME = r"[ァ-ヴー]{2,}(?:\s[ァ-ヴー]{2,})?"  # katakana, as written in 口座名義 and forms
    LABEL = (
        r"(?i:my name is|dear|regards,?|sincerely,?|name:|from:|cc:|attn:?|attention:|contact(?: person)?:|"
        r"on behalf of|signed (?:for )?by)"
    )
    # Words that often precede a name but also anything else (This is Windows 11): a full name only after them.
    WEAK_LABEL = r"(?i:i'm|i am|this is|thanks,|colleague,?)"
    FULL_NAME = rf"{WORD}(?: {WORD}){{1,2}}"
    FIELD = r"(?:氏名|お名前|名前は?|名義人?|口座名義|受取人|契約者|申込者|担当の?|宛名|差出人)[:：]?"
    PATTERNS = (
        re.compile(rf"\b{TITLE}\s(?P<pii>{NAME})"),
        re.compile(rf"{LABEL}\s?(?:{TITLE}\s)?(?P<pii>{NAME})"),
        re.compile(rf"{WEAK_LABEL}\s(?P<pii>{FULL_NAME}|{WORD}(?=\s?(?:from|of|at|here|speaking)\b|[,.!]|$))"),
        re.compile(rf"{FIELD}\s?(?P<pii>{NAME}|{KANA_NAME})"),
        re.compile(rf"\b(?P<pii>{NAME})\s?(?:様|さま|さん|氏|殿|-san\b|\ssan\b)"),
    )
    SCORE = 0.8

    def __init__(self) -> None:
        super().__init__(supported_entities=["PERSON"], supported_language="ja", name="RomajiNameRecognizer")

    def load(self) -> None:
        pass

    def analyze(self, text, entities, nlp_artifacts=None) -> list[RecognizerResult]:
        return [
            make_result(self, "PERSON", m.start("pii"), m.end("pii"), self.SCORE)
            for pattern in self.PATTERNS
            for m in pattern.finditer(text)
        ]


class GinzaPersonRecognizer(EntityRecognizer):
    """GiNZA's statistical NER (``Person``, mapped to PERSON in ``engine.GINZA_TO_PRESIDIO``), honorifics trimmed.

    The model alone is weak evidence (it calls 通知カード or 株式会社ミライ a person now and then): a span counts when
    the dictionary also tags a name in it, or an honorific, title or name label stands beside it."""

    SCORE = 0.85
    UNSUPPORTED_SCORE = 0.45  # under the default threshold; a looser params.pii.score_threshold lets it through

    def __init__(self) -> None:
        super().__init__(supported_entities=["PERSON"], supported_language="ja", name="GinzaPersonRecognizer")

    def load(self) -> None:
        pass

    def analyze(self, text, entities, nlp_artifacts=None) -> list[RecognizerResult]:
        if nlp_artifacts is None:
            return []
        results = []
        for ent in nlp_artifacts.entities:
            if ent.label_ != "PERSON":
                continue
            name = ent.text
            for honorific in HONORIFICS:
                name = name.removesuffix(honorific)
            name = name.rstrip()
            if not re.search(r"[A-Za-zぁ-ヴ一-龯]", name) or re.search(r"株式会社|有限会社|合同会社|\[", name):
                continue
            start, end = ent.start_char, ent.start_char + len(name)
            supported = any(_is_name_token(t) for t in ent) or has_name_context(text, start, end)
            results.append(make_result(self, "PERSON", start, end, self.SCORE if supported else self.UNSUPPORTED_SCORE))
        return results
