"""Street-address recognizer: a place name, a block number, then building and room; Japanese and romaji.

Usage:
    python -c "from slmops.text.pii import find_pii; print(find_pii('愛知県名古屋市中区栄3-4-5 サカエビル302号室'))"

The grammar follows how Japanese addresses are written (住居表示 and 地番): prefecture, city (市/郡/町/村), ward
(区), town (丸の内, 北1条西, 一番町), then the block as 一丁目9番2号, 3丁目1番地, 103番地の2 or 3-4-5(-302), then a
building (…ビル, …タワー, メゾン…, ハイツ…) with its floor or room (15階, 8F, 302号室, 205). Romaji addresses read
the other way round (Room 502, 2-8-1 Nishi-Shinjuku, Shinjuku-ku, Tokyo). A city or ward alone (大阪の店舗) is not
an address of a person and is left in the text.
"""

from __future__ import annotations

import re

from presidio_analyzer import EntityRecognizer, RecognizerResult

from slmops.text.pii.names import make_result
from slmops.text.pii.recognizers import DASH

PREFECTURES = (
    "北海道|青森県|岩手県|宮城県|秋田県|山形県|福島県|茨城県|栃木県|群馬県|埼玉県|千葉県|東京都|神奈川県|"
    "新潟県|富山県|石川県|福井県|山梨県|長野県|岐阜県|静岡県|愛知県|三重県|滋賀県|京都府|大阪府|兵庫県|"
    "奈良県|和歌山県|鳥取県|島根県|岡山県|広島県|山口県|徳島県|香川県|愛媛県|高知県|福岡県|佐賀県|長崎県|"
    "熊本県|大分県|宮崎県|鹿児島県|沖縄県"
)
_N = r"(?:\d{1,5}|[一二三四五六七八九十百〇]{1,4})"
_D = f"[{DASH}]"
# Town part between the anchor (and the 地名 tokens that follow it) and the block number: kanji, katakana, の and
# が (丸の内, 霞が関), 北1条西, 一番町, single spaces. Other kana (particles: で, に, を, は, へ, と) end it; kana place
# names (みなとみらい, つくば) come whole as Sudachi 地名 tokens.
_TOWN = r"(?:[一-龯々〆ヵヶァ-ヴーのがケ]|\d{1,2}(?:条|線|番町)|\s(?=[一-龯ァ-ヴ]))"
_BLOCK = (
    rf"(?:{_N}丁目\s?(?:{_N}(?:番地?|{_D}|の)\s?(?:{_N}(?:号|{_D}{_N})?)?|{_N})?"
    rf"|{_N}番地(?:の?{_N}(?:号)?)?|{_N}番{_N}号|\d{{1,4}}(?:{_D}\d{{1,4}}){{1,3}}"
    # 地番 with 番地 left out (山下町279, 場之町599): a bare number right after a town's 町/村/通, ending the word
    rf"|(?<=[町村通])\d{{1,4}}(?![0-9A-Za-z一-龯{DASH}]))"
)
_NOT_A_COUNT = r"(?![0-9])(?!(?:個|円|%|件|日|月|年|時|分|秒|回|人|本|枚|歳|台|冊|名|点|倍|GB|MB|mm|cm|kg))"
_NAME_CHARS = r"[A-Za-z0-9一-龯々ァ-ヴー・&]"
_SUFFIX = (
    r"(?:ビル(?:ディング)?|タワー(?:マンション)?|マンション|ハイツ|コーポ|レジデンス|ハウス|荘|ヒルズ|プラザ|"
    r"センター|棟|寮|アパート|コート|パレス|ハイム|テラス|ガーデン|スクエア|ホテル|団地|住宅|会館|[本別新]館|"
    r"[A-Za-z]*(?:Building|Bldg\.?|Tower))"
)
_PREFIX = (
    r"(?:メゾン|ハイツ|コーポ|パーク|グラン|ヴィラ|シャトー|ライオンズ|プラウド|ドミール|サンハイツ|マンション|レジデンス|"
    r"ハイム|アーバン|ロイヤル|第[一二三四五六七八九十\d])"
)
# floor, room, wing (A棟, 7号棟), then a bare room number after a floor (3階301)
# 12F宛: F is a floor when no letter or digit follows (\b would not do: 宛 is a word character too)
_ROOM = (
    r"(?:\d{1,3}号棟|[A-Z]棟|\d{1,3}(?:階|F(?![A-Za-z0-9]))|\d{1,4}号室|#\d{1,4}|\d{1,4}号(?![室棟])"
    r"|(?<=[階F棟])\s?\d{2,4}(?![0-9]))"
)
# A building named without a building word (ベイサイド別府405号室, ポルテ金沢12F): any name that starts with a letter,
# katakana or kanji, when a floor or room follows it (marked, or a bare 3-4 digit number glued to the name).
_ROOM_NEXT = rf"(?=\s?{_ROOM}|\d{{3,4}}(?![0-9{DASH}]))"
_BUILDING = (
    rf"(?:(?:\s?の?\s?|\s)(?:{_PREFIX}{_NAME_CHARS}{{0,15}}?(?=\s?\d)"  # メゾン本町 (a room number follows)
    # サカエビル, タワーA, はりまやビル
    rf"|(?:[ぁ-ゖ]{{1,6}}{_NAME_CHARS}{{0,25}}|{_NAME_CHARS}{{1,25}}){_SUFFIX}(?:\s?[A-Z](?![a-z]))?"
    rf"|[A-Za-z一-龯々ァ-ヴ]{_NAME_CHARS}{{0,24}}?{_ROOM_NEXT})"
    rf"(?:\s?(?:{_ROOM}|\d{{2,4}}(?![0-9]))(?:\s?{_ROOM})*)?)?"
)
ADDRESS_JA = re.compile(rf"{_TOWN}{{0,30}}?{_BLOCK}{_NOT_A_COUNT}{_BUILDING}(?:\s?{_ROOM})*")
_EN_WORD = r"[A-Z][a-z]+(?:-[A-Za-z]+)?"
ADDRESS_EN = re.compile(
    r"(?:(?:Room|Apt\.?|Unit|Suite|#)\s?\d{1,4}[A-Z]?,?\s)?"
    r"(?:[A-Z][A-Za-z]+\s(?:Building|Bldg\.?|Tower|Heights|Mansion|Residence)\s?\d*[A-Z]?,?\s)?"
    rf"\d{{1,4}}(?:-\d{{1,4}}){{1,3}},?\s{_EN_WORD}(?:,?\s{_EN_WORD}){{1,4}}"
)
EN_ADDRESS_WORDS = re.compile(r"-(?:ku|shi|cho|machi|gun)\b|\b(?:Tokyo|Osaka|Kyoto|Japan|Ward|City|Prefecture)\b")


class AddressRecognizer(EntityRecognizer):
    """A place anchor (a prefecture, a Sudachi ``地名`` token, a GiNZA LOCATION) followed within 30 characters by a
    block number, then an optional building and room; and romaji addresses with a ward, city or prefecture."""

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
            for t in doc:
                if "固有名詞-地名" not in t.tag_:
                    continue
                end = t.i + 1
                while end < len(doc) and "固有名詞-地名" in doc[end].tag_ and not doc[end - 1].whitespace_:
                    end += 1
                anchors.add((t.idx, doc[end - 1].idx + len(doc[end - 1].text)))
            for ent in nlp_artifacts.entities:
                if ent.label_ == "LOCATION" and not re.match(r"[〒0-9]", ent.text):
                    anchors.add((ent.start_char, ent.start_char))
        return sorted(anchors)

    def analyze(self, text, entities, nlp_artifacts=None) -> list[RecognizerResult]:
        results, covered = [], -1
        for start, resume in self._anchors(text, nlp_artifacts):
            if start < covered:
                continue
            m = ADDRESS_JA.match(text, resume) or ADDRESS_JA.match(text, start)
            if m:
                end = m.start() + len(m.group(0).rstrip())
                results.append(make_result(self, "LOCATION", start, end, self.SCORE))
                covered = end
        for m in ADDRESS_EN.finditer(text):
            if EN_ADDRESS_WORDS.search(m.group(0)):
                results.append(make_result(self, "LOCATION", m.start(), m.end(), self.SCORE))
        return results
