"""Presidio pattern recognizers for Japanese structured PII, one small class per format.

Usage:
    python -c "from slmops.text.pii.recognizers import PhoneRecognizer as R; print(R().analyze('TEL 045-123-4567', []))"

Each class has its patterns (written from the format's specification), a validation (check digit, Luhn, issuer
prefix, digit count) and context words. Text is NFKC-normalised before it gets here, so full-width digits and
letters are already ASCII; dashes are not all unified by NFKC, hence ``DASH``. A context word counts when it is in
the ``WINDOW`` characters before the match (or ``AFTER`` characters after it) on the same line: Japanese has no
spaces, so Presidio's token-lemma window would miss ``口座番号1234567``.
"""

from __future__ import annotations

import re

from presidio_analyzer import Pattern, PatternRecognizer, RecognizerResult

DASH = "\\-‐‑‒–—―−ー"  # hyphen, non-breaking hyphen, en/em dashes, minus sign, katakana long mark typed as a dash
SEP = f"[{DASH}\\s.]"  # one group separator
NOT_BEFORE = r"(?<![0-9A-Za-z+\-_])"  # a number glued to letters (ORD-2025…, E0012) is not PII
NOT_AFTER = r"(?![0-9])"


def digits(text: str) -> str:
    return re.sub(r"\D", "", text)


class JaPatternRecognizer(PatternRecognizer):
    """Regex candidates, scored by :meth:`validate`, raised to ``CONTEXT_SCORE`` by a nearby context word.

    A pattern may put the PII in a named group ``pii`` (``第123456789012号`` masks only the digits).
    """

    ENTITY = ""
    PATTERNS: tuple[tuple[str, str, float], ...] = ()  # (name, regex, base score)
    CONTEXT: tuple[str, ...] = ()
    CONTEXT_SCORE = 0.85
    # Words before a match that say it is something else (品番 100-2003 is a product, not a postal code).
    NOT_CONTEXT: tuple[str, ...] = ()
    WINDOW = 20
    AFTER = 8
    FLAGS = 0

    def __init__(self) -> None:
        super().__init__(
            supported_entity=self.ENTITY,
            name=type(self).__name__,
            supported_language="ja",
            patterns=[Pattern(name, regex, score) for name, regex, score in self.PATTERNS],
            context=list(self.CONTEXT) or None,
            global_regex_flags=self.FLAGS,
        )
        self._compiled = [(score, re.compile(regex, self.FLAGS)) for _, regex, score in self.PATTERNS]

    def validate(self, match: str, base: float) -> float | None:
        """The score of a candidate before context: ``base``, 0 when its checks fail (a context word may still
        vouch for it), or None when it cannot be this entity at all (no context word changes that)."""
        return base

    def has_context(self, text: str, start: int, end: int, words: tuple[str, ...] | None = None) -> bool:
        before = text[max(0, start - self.WINDOW) : start].rsplit("\n", 1)[-1].lower()
        after = text[end : end + self.AFTER].split("\n", 1)[0].lower()
        return any(word in before or word in after for word in (self.CONTEXT if words is None else words))

    def analyze(self, text, entities, nlp_artifacts=None, regex_flags=None) -> list[RecognizerResult]:
        results = []
        for base, regex in self._compiled:
            for m in regex.finditer(text):
                group = "pii" if "pii" in regex.groupindex else 0
                start, end = m.span(group)
                score = self.validate(m.group(group), base)
                if score is None:
                    continue
                if self.NOT_CONTEXT and self.has_context(text, start, start, self.NOT_CONTEXT):
                    score = 0.0
                if self.CONTEXT and score < self.CONTEXT_SCORE and self.has_context(text, start, end):
                    score = self.CONTEXT_SCORE
                if score > 0:
                    metadata = {
                        RecognizerResult.RECOGNIZER_NAME_KEY: self.name,
                        RecognizerResult.RECOGNIZER_IDENTIFIER_KEY: self.id,
                        RecognizerResult.IS_SCORE_ENHANCED_BY_CONTEXT_KEY: True,  # context handled here
                    }
                    results.append(RecognizerResult(self.ENTITY, start, end, score, recognition_metadata=metadata))
        return self.remove_duplicates(results)


def my_number_check_digit(first11: str) -> int:
    """個人番号の検査用数字 (総務省令第85号 第5条): weights 2..7 then 2..6 from the right, mod 11."""
    total = sum(int(d) * (n + 1 if n <= 6 else n - 5) for n, d in enumerate(reversed(first11), start=1))
    remainder = total % 11
    return 0 if remainder <= 1 else 11 - remainder


class MyNumberRecognizer(JaPatternRecognizer):
    """マイナンバー (個人番号): 12 digits, the last a check digit; grouped 4-4-4 or not at all (an 8-4 reference such
    as 20251125-0007 is a date-based ID, whatever its last digit)."""

    ENTITY = "JP_MY_NUMBER"
    PATTERNS = ((
        "my_number", NOT_BEFORE + rf"(?:\d{{12}}|\d{{4}}{SEP}\d{{4}}{SEP}\d{{4}})" + NOT_AFTER, 0.8),)  # fmt: skip
    CONTEXT = ("マイナンバー", "個人番号", "my number", "mynumber", "通知カード", "個人番号カード")

    def validate(self, match: str, base: float) -> float:
        number = digits(match)
        if len(set(number)) == 1:
            return 0.0
        return base if my_number_check_digit(number[:11]) == int(number[11]) else 0.0


def luhn_ok(number: str) -> bool:
    total = 0
    for i, d in enumerate(reversed(number)):
        n = int(d) * (2 if i % 2 else 1)
        total += n - 9 if n > 9 else n
    return total % 10 == 0


# (issuer, prefix ranges as (low, high) over the first len(low) digits, allowed lengths). Visa's 13-digit numbers
# are no longer issued, and leaving 13 out keeps JAN/EAN-13 product codes (45…/49…) from ever being a card.
ISSUERS = (
    ("visa", (("4", "4"),), (16, 19)),
    ("mastercard", (("51", "55"), ("2221", "2720")), (16,)),
    ("amex", (("34", "34"), ("37", "37")), (15,)),
    ("jcb", (("3528", "3589"),), (16, 17, 18, 19)),
    ("diners", (("300", "305"), ("3095", "3095"), ("36", "36"), ("38", "39")), (14, 15, 16, 17, 18, 19)),
    ("discover", (("6011", "6011"), ("644", "649"), ("65", "65")), (16, 17, 18, 19)),
    ("unionpay", (("62", "62"),), (16, 17, 18, 19)),
)


def card_issuer(number: str) -> str | None:
    for issuer, ranges, lengths in ISSUERS:
        if len(number) in lengths and any(low <= number[: len(low)] <= high for low, high in ranges):
            return issuer
    return None


class CreditCardRecognizer(JaPatternRecognizer):
    """Card numbers: 4-4-4-4(-3), Amex 4-6-5, Diners 4-6-4, or 14-19 digits unbroken; Luhn and issuer prefix."""

    ENTITY = "CREDIT_CARD"
    S = f"[{DASH} ]"
    PATTERNS = (
        ("grouped_4444", NOT_BEFORE + rf"\d{{4}}{S}\d{{4}}{S}\d{{4}}{S}\d{{4}}(?:{S}\d{{3}})?" + NOT_AFTER, 0.9),
        ("grouped_465", NOT_BEFORE + rf"\d{{4}}{S}\d{{6}}{S}\d{{4,5}}" + NOT_AFTER, 0.9),
        ("unbroken", NOT_BEFORE + r"\d{14,19}" + NOT_AFTER, 0.85),
    )
    CONTEXT = ("カード", "card", "クレジット", "credit", "visa", "master", "amex", "jcb", "決済")
    CONTEXT_SCORE = 0.7

    def validate(self, match: str, base: float) -> float:
        number = digits(match)
        return base if luhn_ok(number) and card_issuer(number) else 0.0


# A phone number may be glued to its label (TEL03-1234-5678, ＴＥＬ（03）…) but not to other letters or digits.
PHONE_BEFORE = r"(?:(?<![0-9A-Za-z+\-_])|(?<=TEL)|(?<=Tel)|(?<=tel)|(?<=FAX)|(?<=Fax)|(?<=fax))"


class PhoneRecognizer(JaPatternRecognizer):
    """Japanese phone numbers (電気通信番号規則): 0 + 9 digits, or 0[5789]0 / 0800 + 8 digits; +81 drops the 0.

    Written with hyphens, spaces, dots or none, the area code or the exchange in parentheses (（045）123-4567,
    03(1234)5678), full-width (NFKC'd before), or international (+81 90-1234-5678, +81 (0)3 1234 5678).
    """

    ENTITY = "PHONE_NUMBER"
    G = rf"{SEP}?\s?"  # between groups: one separator, maybe with a space
    PATTERNS = (
        (
            "domestic",
            PHONE_BEFORE
            + rf"(?:\(0\d{{1,4}}\)|0\d{{1,4}}){G}(?:\(\d{{1,4}}\)|\d{{1,4}}){G}(?:\d{{1,4}}{G})?\d{{3,4}}"
            + NOT_AFTER,
            0.75,
        ),
        (
            "international",
            rf"(?<![0-9])\+\s?81{G}(?:\(0\)\s?)?(?:\(\d{{1,4}}\)|\d{{1,4}}){G}\d{{1,4}}{G}\d{{3,4}}" + NOT_AFTER,
            0.85,
        ),
    )
    CONTEXT = ("電話", "tel", "携帯", "phone", "call", "連絡先", "fax", "番号")

    def validate(self, match: str, base: float) -> float | None:
        number = digits(match)
        if match.lstrip().startswith("+"):
            number = "0" + number[2:].removeprefix("0")  # +81 (0)3… → 03…
        if number.startswith("00") or len(number) > 11:
            return None  # 00 dials abroad and no Japanese number is longer: a receipt or reference number
        if len(number) == 10 and number[1] != "0":
            return base
        if len(number) == 11 and (re.match(r"0[5789]0", number) or number.startswith("0800")):
            return base
        return 0.0


class PostalCodeRecognizer(JaPatternRecognizer):
    """郵便番号: 3 + 4 digits. With 〒 it is sure; ``123-4567`` alone is likely; 7 digits alone need context."""

    ENTITY = "JP_POSTAL_CODE"
    PATTERNS = (
        ("with_mark", rf"〒\s?(?P<pii>\d{{3}}[{DASH}]?\d{{4}})" + NOT_AFTER, 0.95),
        ("hyphenated", r"(?<![0-9A-Za-z+\-_)])" + rf"\d{{3}}[{DASH}]\d{{4}}(?![0-9{DASH}])", 0.6),
        ("unbroken", NOT_BEFORE + r"\d{7}" + NOT_AFTER, 0.0),
    )
    CONTEXT = ("郵便", "〒", "zip", "postal", "post code", "postcode")
    NOT_CONTEXT = ("品番", "型番", "商品", "製品", "注文", "sku", "item", "product", "model", "order", "part")


class BankAccountRecognizer(JaPatternRecognizer):
    """口座番号: 7 digits (banks), or ゆうちょ 記号 5 digits + 番号 8 digits; only with a banking word nearby."""

    ENTITY = "JP_BANK_ACCOUNT"
    PATTERNS = (("bank", NOT_BEFORE + r"\d{7}" + NOT_AFTER, 0.0),)
    CONTEXT = ("口座", "普通", "当座", "預金", "貯金", "振込", "振り込み", "account", "acct", "a/c")
    CONTEXT_SCORE = 0.9
    WINDOW = 25


class YuchoAccountRecognizer(JaPatternRecognizer):
    """ゆうちょ銀行: 記号 (5 digits, starting 1) and 番号 (up to 8 digits), together (10120-12345671) or labelled."""

    ENTITY = "JP_BANK_ACCOUNT"
    PATTERNS = (
        ("together", NOT_BEFORE + rf"1\d{{4}}[{DASH}\s]?\d{{8}}" + NOT_AFTER, 0.3),
        ("symbol", r"記号[:：]?\s?(?P<pii>1\d{4})" + NOT_AFTER, 0.3),
        ("number", r"(?<!電話)番号[:：]?\s?(?P<pii>\d{5,8})" + NOT_AFTER, 0.0),
    )
    CONTEXT = ("ゆうちょ", "記号", "振替", "貯金", "口座")
    CONTEXT_SCORE = 0.9
    WINDOW = 25


class PassportRecognizer(JaPatternRecognizer):
    """旅券番号: two capital letters and seven digits (TK1234567); the shape alone is too common, so context."""

    ENTITY = "JP_PASSPORT"
    PATTERNS = (("passport", r"(?<![0-9A-Za-z])[A-Z]{2}\d{7}(?![0-9A-Za-z])", 0.4),)
    CONTEXT = ("旅券", "パスポート", "passport")
    CONTEXT_SCORE = 0.9
    WINDOW = 25


class DriverLicenseRecognizer(JaPatternRecognizer):
    """運転免許証番号: 12 digits, printed 第123456789012号. Context required (a My Number is 12 digits too)."""

    ENTITY = "JP_DRIVER_LICENSE"
    PATTERNS = (
        ("printed", rf"第\s?(?P<pii>\d{{4}}{SEP}?\d{{4}}{SEP}?\d{{4}})\s?号", 0.6),
        ("digits", NOT_BEFORE + rf"\d{{4}}{SEP}?\d{{4}}{SEP}?\d{{4}}" + NOT_AFTER, 0.0),
    )
    CONTEXT = ("免許", "license", "licence")
    CONTEXT_SCORE = 0.95  # beats a My Number whose check digit happens to be valid
    WINDOW = 25


class EmailRecognizer(JaPatternRecognizer):
    """E-mail addresses (RFC 5322's common subset); ＠ and full-width letters are ASCII after NFKC."""

    ENTITY = "EMAIL_ADDRESS"
    LOCAL = r"[A-Za-z0-9._%+\-]+"
    DOMAIN = r"[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}"
    PATTERNS = (
        ("email", rf"(?<![A-Za-z0-9._%+\-]){LOCAL}@{DOMAIN}", 0.95),
        ("obfuscated", rf"(?<![A-Za-z0-9._%+\-]){LOCAL}\s?(?:\(at\)|\[at\]|アットマーク)\s?{DOMAIN}", 0.8),
    )


STRUCTURED = (
    MyNumberRecognizer,
    CreditCardRecognizer,
    PhoneRecognizer,
    PostalCodeRecognizer,
    BankAccountRecognizer,
    YuchoAccountRecognizer,
    PassportRecognizer,
    DriverLicenseRecognizer,
    EmailRecognizer,
)
