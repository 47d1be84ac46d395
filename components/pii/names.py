"""Recognizers for personal names and street addresses: Sudachi's dictionary tags, address grammar, GiNZA NER.

Usage:
    python -c "from components.pii import find_pii; print(find_pii('中村健一様 愛知県名古屋市中区栄3-4-5'))"

GiNZA's tokenizer is SudachiPy, whose dictionary tags given names and surnames (``名詞-固有名詞-人名-姓/名``,
katakana and some romaji included) and place names (``名詞-固有名詞-地名``, often a whole ``東京都千代田区丸の内``).
That is a fast dictionary NER (about a millisecond for 200 characters); GiNZA's statistical NER adds names the
dictionary lacks, at tens of milliseconds (see ``engine.py``). Placeholders never include an honorific:
``中村様`` → ``[NAME]様``.
"""

from __future__ import annotations

import re

from presidio_analyzer import EntityRecognizer, RecognizerResult

from components.pii.recognizers import DASH

HONORIFICS = ("様", "さま", "さん", "氏", "殿", "君", "くん", "ちゃん", "先生", "san", "-san", "sama")
NAME_CONTEXT_BEFORE = ("mr", "ms", "mrs", "miss", "dr", "dear", "name is", "氏名", "名前", "担当", "宛", "from")
NAME_CONTEXT_AFTER = ("と申します", "と申し", "です", "より", "宛")

# ---------------------------------------------------------------- person


def _result(recognizer: EntityRecognizer, entity: str, start: int, end: int, score: float) -> RecognizerResult:
    metadata = {
        RecognizerResult.RECOGNIZER_NAME_KEY: recognizer.name,
        RecognizerResult.RECOGNIZER_IDENTIFIER_KEY: recognizer.id,
        RecognizerResult.IS_SCORE_ENHANCED_BY_CONTEXT_KEY: True,
    }
    return RecognizerResult(entity, start, end, score, recognition_metadata=metadata)


def _is_name_token(token) -> bool:
    return "固有名詞-人名" in token.tag_


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
        results, i = [], 0
        while i < len(doc):
            if not _is_name_token(doc[i]):
                i += 1
                continue
            start, end = i, i + 1
            while end < len(doc) and (_is_name_token(doc[end]) or (_is_latin_word(doc[end]) and doc[i].is_ascii)):
                end += 1
            while start > 0 and _is_latin_word(doc[start - 1]) and doc[i].is_ascii:
                start -= 1
            span = doc[start:end]
            score = self.FULL_SCORE if len(span) >= 2 else self.LONE_SCORE
            if score < self.FULL_SCORE and self._has_context(text, span.start_char, span.end_char):
                score = self.FULL_SCORE
            results.append(_result(self, "PERSON", span.start_char, span.end_char, score))
            i = end
        return results

    @staticmethod
    def _has_context(text: str, start: int, end: int) -> bool:
        after = text[end : end + 6].lstrip().lower()
        before = text[max(0, start - 12) : start].lower()
        return (
            after.startswith(HONORIFICS)
            or any(after.startswith(w) for w in NAME_CONTEXT_AFTER)
            or any(w in before for w in NAME_CONTEXT_BEFORE)
        )


class RomajiNameRecognizer(EntityRecognizer):
    """Romaji and English names the dictionary does not know, when a title or honorific says it is a name:
    ``Mr. Tanaka Hiroshi``, ``Emily Clark様``, ``Dear Ms. Kato``, ``My name is …``."""

    WORD = r"[A-Z][a-z]+(?:[\-'][A-Z]?[a-z]+)?|[A-Z]{2,}"
    NAME = rf"(?:{WORD})(?:\s(?:{WORD})){{0,2}}"
    PATTERNS = (
        re.compile(rf"\b(?:Mr|Ms|Mrs|Miss|Dr|Prof)\.?\s(?P<pii>{NAME})"),
        re.compile(rf"(?i:my name is|this is|dear|regards,?|sincerely,?|担当の?|名前は)\s?(?P<pii>{NAME})"),
        re.compile(rf"\b(?P<pii>{NAME})\s?(?:様|さま|さん|氏|殿|-san\b|\ssan\b)"),
    )
    SCORE = 0.8

    def __init__(self) -> None:
        super().__init__(supported_entities=["PERSON"], supported_language="ja", name="RomajiNameRecognizer")

    def load(self) -> None:
        pass

    def analyze(self, text, entities, nlp_artifacts=None) -> list[RecognizerResult]:
        return [
            _result(self, "PERSON", m.start("pii"), m.end("pii"), self.SCORE)
            for pattern in self.PATTERNS
            for m in pattern.finditer(text)
        ]


class GinzaPersonRecognizer(EntityRecognizer):
    """GiNZA's statistical NER (``Person``, mapped to PERSON in ``engine.GINZA_TO_PRESIDIO``), honorifics trimmed."""

    SCORE = 0.85

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
            if len(name) >= 2 or (name and re.match(r"[一-龯]", name)):
                results.append(_result(self, "PERSON", ent.start_char, ent.start_char + len(name), self.SCORE))
        return results


# ---------------------------------------------------------------- address

PREFECTURES = (
    "北海道|青森県|岩手県|宮城県|秋田県|山形県|福島県|茨城県|栃木県|群馬県|埼玉県|千葉県|東京都|神奈川県|"
    "新潟県|富山県|石川県|福井県|山梨県|長野県|岐阜県|静岡県|愛知県|三重県|滋賀県|京都府|大阪府|兵庫県|"
    "奈良県|和歌山県|鳥取県|島根県|岡山県|広島県|山口県|徳島県|香川県|愛媛県|高知県|福岡県|佐賀県|長崎県|"
    "熊本県|大分県|宮崎県|鹿児島県|沖縄県"
)
_N = r"(?:\d{1,5}|[一二三四五六七八九十百〇]{1,4})"
_D = f"[{DASH}]"
# Town part between the anchor (and the 地名 tokens that follow it) and the block number: kanji, katakana, の and
# が (丸の内, 霞が関), 北7条西, single spaces. Other kana (particles: で, に, を, は, へ, と) end it; kana place names
# (みなとみらい, つくば) come whole as Sudachi 地名 tokens.
_TOWN = r"(?:[一-龯々〆ヵヶァ-ヴーのがケ]|\d{1,2}[条線]|\s(?=[一-龯ァ-ヴ]))"
_BLOCK = (
    rf"(?:{_N}丁目\s?(?:{_N}(?:番地?|{_D}|の)\s?(?:{_N}(?:号|{_D}{_N})?)?)?"
    rf"|{_N}番地(?:の?{_N}(?:号)?)?|{_N}番{_N}号|\d{{1,4}}(?:{_D}\d{{1,4}}){{1,3}})"
)
_NOT_A_COUNT = r"(?![0-9])(?!\s?(?:個|円|%|件|日|月|年|時|分|秒|回|人|本|枚|歳|台|冊|名|点|倍|GB|MB|mm|cm|kg))"
_BUILDING = (
    r"(?:\s?[A-Za-z0-9一-龯々ァ-ヴー・&]{1,25}?"
    r"(?:ビル(?:ディング)?|タワー|マンション|ハイツ|コーポ|レジデンス|ハウス|荘|ヒルズ|プラザ|センター|棟|寮|"
    r"アパート|メゾン|パレス|コート|[A-Za-z]*(?:Building|Bldg\.?|Tower))"
    r"(?:\s?[A-Z](?![a-z]))?)?"
    r"(?:\s?(?:\d{1,3}(?:階|F\b)|\d{1,4}号室|#\d{1,4}|\d{1,4}号(?!室)))*"
)
ADDRESS_JA = re.compile(rf"{_TOWN}{{0,30}}?{_BLOCK}{_NOT_A_COUNT}{_BUILDING}")
ADDRESS_EN = re.compile(
    r"(?:(?:Room|Apt\.?|Unit|Suite|#)\s?\d{1,4}[A-Z]?,?\s)?"
    r"(?:[A-Z][A-Za-z]+\s(?:Building|Bldg\.?|Tower|Heights|Mansion)\s?\d*[A-Z]?,?\s)?"
    r"\d{1,4}(?:-\d{1,4}){1,3},?\s[A-Z][a-z]+(?:-[a-z]+)?(?:,?\s[A-Z][a-z]+(?:-(?:ku|shi|cho|machi|gun|ken|to|fu))?){1,4}"
)
EN_ADDRESS_WORDS = re.compile(r"-(?:ku|shi|cho|machi|gun)\b|\b(?:Tokyo|Osaka|Kyoto|Japan|Ward|City|Prefecture)\b")


class AddressRecognizer(EntityRecognizer):
    """Street-level addresses: a place anchor (a prefecture, a Sudachi ``地名`` token, or a GiNZA LOCATION) followed
    within 30 characters by a block number (一丁目9番2号, 3丁目1番地, 栄3-4-5), then an optional building and room
    (…ビル302号室, …タワー15階). A city or ward alone (``大阪の店舗``) is not personal data and is left alone."""

    SCORE = 0.9

    def __init__(self) -> None:
        super().__init__(supported_entities=["LOCATION"], supported_language="ja", name="AddressRecognizer")
        self._prefecture = re.compile(PREFECTURES)

    def load(self) -> None:
        pass

    def _anchors(self, text: str, nlp_artifacts) -> list[tuple[int, int]]:
        """``(start, resume)``: where an address may begin, and where its town part may begin (after the place
        tokens that follow the anchor, which may hold kana the town part does not allow)."""
        anchors = {(m.start(), m.end()) for m in self._prefecture.finditer(text)}
        if nlp_artifacts is not None and nlp_artifacts.tokens is not None:
            doc = nlp_artifacts.tokens
            places = [t for t in doc if "固有名詞-地名" in t.tag_]
            for t in places:
                end = t.i + 1
                while end < len(doc) and "固有名詞-地名" in doc[end].tag_ and not doc[end - 1].whitespace_:
                    end += 1
                anchors.add((t.idx, doc[end - 1].idx + len(doc[end - 1].text)))
            anchors |= {(e.start_char, e.end_char) for e in nlp_artifacts.entities if e.label_ == "LOCATION"}
        return sorted(anchors)

    def analyze(self, text, entities, nlp_artifacts=None) -> list[RecognizerResult]:
        results, covered = [], -1
        for start, resume in self._anchors(text, nlp_artifacts):
            if start < covered:
                continue
            m = ADDRESS_JA.match(text, resume) or ADDRESS_JA.match(text, start)
            if m:
                end = m.start() + len(m.group(0).rstrip())
                results.append(_result(self, "LOCATION", start, end, self.SCORE))
                covered = end
        for m in ADDRESS_EN.finditer(text):
            if EN_ADDRESS_WORDS.search(m.group(0)):
                results.append(_result(self, "LOCATION", m.start(), m.end(), self.SCORE))
        return results
