"""Japanese PII: every recognizer on its formats (half- and full-width), what must survive, counts, config."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections import Counter

import pytest
from pydantic import ValidationError

from slmops.config import PIIConfig
from slmops.text import pii
from slmops.text.pii import analyze, find_pii, legacy, mask
from slmops.text.pii.recognizers import card_issuer, luhn_ok, my_number_check_digit
from tests.conftest import slmops


@pytest.fixture(scope="session", autouse=True)
def pii_engine():
    """GiNZA's pipeline loads once (seconds) for the whole session; every test below reuses it."""
    from slmops.text.pii.engine import analyzer

    return analyzer(False)


@pytest.mark.parametrize(
    ("text", "label", "value"),
    [
        ("携帯は090-1234-5678です", "PHONE", "090-1234-5678"),
        ("会社の電話 03-1234-5678", "PHONE", "03-1234-5678"),
        ("自宅（045）123-4567に", "PHONE", "123-4567"),  # area code in parentheses, full-width
        ("TEL 03(1234)5678", "PHONE", "5678"),
        ("フリーダイヤル0120-123-456", "PHONE", "0120-123-456"),
        ("+81 90-1234-5678 まで", "PHONE", "1234-5678"),
        ("ＴＥＬ：０９０－１２３４－５６７８", "PHONE", "1234"),
        ("電話 ０８０ー１２３４ー５６７８", "PHONE", "1234"),  # katakana long mark typed as a dash
        ("call 070.1234.5678", "PHONE", "070.1234.5678"),
        ("メール taro.yamada@example.co.jp", "EMAIL", "taro.yamada@example.co.jp"),
        ("ｔａｒｏ＠ｅｘａｍｐｌｅ．ｃｏｍ宛", "EMAIL", "taro@example.com"),
        ("〒150-0001 です", "POSTAL", "150-0001"),
        ("郵便番号は１５０－０００１", "POSTAL", "150-0001"),
        ("郵便番号2200012", "POSTAL", "2200012"),
        ("マイナンバーは1234 5678 9018です", "MYNUMBER", "9018"),  # valid check digit
        ("個人番号 2025 1230 0099", "MYNUMBER", "0099"),  # invalid check digit, but the context says so
        ("書類に271828182840と記入", "MYNUMBER", "271828182840"),  # valid check digit, no context
        ("カード 4111-1111-1111-1111 で払いました", "CARD", "4111"),
        ("card 4111111111111111", "CARD", "4111111111111111"),
        ("Amex 3782-822463-10005", "CARD", "822463"),  # Amex 4-6-5
        ("ＪＣＢ　３５３０　１１１３　３３３０　００００", "CARD", "3530"),
        ("三菱UFJ銀行 新宿支店 普通 7654321", "BANK_ACCOUNT", "7654321"),
        ("口座番号：１２３４５６７", "BANK_ACCOUNT", "1234567"),
        ("ゆうちょ銀行 記号10120 番号12345671", "BANK_ACCOUNT", "12345671"),
        ("パスポート番号はTK1234567です", "PASSPORT", "TK1234567"),
        ("旅券番号：ＭＺ７６５４３２１", "PASSPORT", "MZ7654321"),
        ("運転免許証番号は123456789012です", "DRIVER_LICENSE", "123456789012"),
        ("免許証 第３０１２３４５６７８９０号", "DRIVER_LICENSE", "301234567890"),
        ("中村健一と申します", "NAME", "中村健一"),
        ("松本 由美様", "NAME", "由美"),
        ("コバヤシ ユウキ様", "NAME", "ユウキ"),
        ("タナカ　ハナコ　様", "NAME", "ハナコ"),
        ("Emily Clark様の注文", "NAME", "Clark"),
        ("Dear Mr. Tanaka,", "NAME", "Tanaka"),
        ("My name is Hiroshi Suzuki.", "NAME", "Suzuki"),
        ("担当の佐藤さん", "NAME", "佐藤"),
        ("高橋部長に確認", "NAME", "高橋"),
        ("経理部の上野と申します", "NAME", "上野"),  # 上野 is a place name too
        ("東京都千代田区丸の内一丁目9番2号 グラントウキョウサウスタワー15階", "ADDRESS", "15階"),
        ("愛知県名古屋市中区栄3-4-5 サカエビル302号室まで", "ADDRESS", "302"),
        ("大阪府大阪市北区梅田３丁目１番地", "ADDRESS", "梅田"),
        ("横浜市西区みなとみらい2-3-1へ", "ADDRESS", "2-3-1"),
        ("1-9-2 Marunouchi, Chiyoda-ku, Tokyo", "ADDRESS", "Marunouchi"),
    ],
)
def test_each_format_is_masked_with_its_type(text, label, value):
    masked = mask(text)
    assert f"[{label}]" in masked, masked
    assert value not in masked, masked
    assert not find_pii(masked), f"PII left in {masked!r}"


@pytest.mark.parametrize(
    "text",
    [
        "注文番号ORD-20251230-0099の件です",
        "ＯＲＤ－２０２５１１０２－０１２３が届きません",
        "JANコード4901234567894の商品",  # 13 digits that pass Luhn: not a card
        "問い合わせ番号123456789012で",  # 12 digits with an invalid My Number check digit
        "追跡番号 1234-5678-9012 です",
        "2,300円を請求されました",
        "12月3日に届く予定",
        "2025-12-30 10:15:00 にログイン",
        "エラーコードE404",
        "バージョン2.3.1で起動しません",
        "株式会社サンプルの製品ABC-100が故障",
        "トヨタのプリウスに乗っています",
        "東京の店舗で購入しました",  # a city alone is not an address
        "大阪支店に3-4日以内に送って",
        "品番 100-2003 の在庫",  # looks like a postal code, but a product number says otherwise
        "7654321",  # 7 digits with no banking word
        "TK1234567",  # passport shape with no passport word
        "お客様各位、担当者様",
        "出身は大阪です",  # a place name that is also a surname needs an honorific to be a person
        "上野駅で待ち合わせ",
    ],
)
def test_ordinary_text_survives(text):
    assert mask(text) == pii.normalize(text)


def test_check_digits_and_issuers():
    assert my_number_check_digit("12345678901") == 8
    assert luhn_ok("4111111111111111") and not luhn_ok("4111111111111112")
    assert card_issuer("378282246310005") == "amex"
    assert card_issuer("4901234567894") is None  # 13 digits: Visa no longer issues them; JAN codes are 13


def test_mask_counts_by_type_and_keeps_honorifics():
    counts: Counter[str] = Counter()
    masked = mask("中村様 090-1234-5678 と 03-1234-5678、a@example.jp", counts)
    assert masked == "[NAME]様 [PHONE] と [PHONE]、[EMAIL]"
    assert counts == {"PHONE": 2, "NAME": 1, "EMAIL": 1}


def test_masking_is_idempotent_and_nfkc_first():
    once = mask("ＴＥＬ０９０－１２３４－５６７８　山田太郎")
    assert once == "TEL[PHONE] [NAME]"
    assert mask(once) == once and not find_pii(once)
    assert mask("ＡＢＣ１２３") == "ABC123"


def test_overlapping_findings_leave_nothing_unmasked():
    masked = mask("〒530-0001 大阪市北区梅田1-1-3 大阪駅前第3ビル 20階")
    assert masked == "〒[POSTAL] [ADDRESS]"


def test_config_selects_entities_threshold_and_allow_list():
    text = "山田太郎 090-1234-5678"
    assert mask(text, cfg=PIIConfig(entities=["PHONE"])) == "山田太郎 [PHONE]"
    assert mask(text, cfg=PIIConfig(allow_list=["山田太郎"])) == "山田太郎 [PHONE]"
    assert mask("TK1234567", cfg=PIIConfig(score_threshold=0.3)) == "[PASSPORT]"  # shape alone scores 0.4
    with pytest.raises(ValidationError, match="entities"):
        PIIConfig(entities=["SSN"])
    with pytest.raises(ValidationError):
        PIIConfig(entities=[])


def test_inside_remembering_an_analysis_is_per_text_and_settings_and_forgotten_after():
    """A stage scans the same text several times: inside ``pii.remembering()`` the second scan is from memory,
    other settings get their own answer, a caller editing its list changes nothing, and the block's end forgets."""
    text = "山田太郎 090-1234-5678"
    with pii.remembering() as memo:
        everything = analyze(text)
        assert [f.label for f in everything] == ["NAME", "PHONE"] and len(memo) == 1
        assert [f.label for f in analyze(text, PIIConfig(entities=["PHONE"]))] == ["PHONE"]
        assert [f.label for f in analyze(text, PIIConfig(allow_list=["山田太郎"]))] == ["PHONE"]
        everything.clear()
        assert analyze("山田太郎 ０９０-１２３４-５６７８") == analyze(text) and len(analyze(text)) == 2  # NFKC first
        assert mask(text) == "[NAME] [PHONE]" and len(memo) == 3
        with pii.remembering() as inner:
            assert inner is memo  # a nested block shares the stage's memory
    with pii.remembering() as memo:
        assert memo == {}  # nothing outlived the block
    assert analyze(text) == analyze(text) and len(analyze(text)) == 2


def test_batch_and_long_texts_match_single_calls():
    texts = ["中村健一様 090-1234-5678", "注文番号ORD-20251230-0099", "〒100-0005 東京都千代田区丸の内1-9-2"]
    assert pii.mask_many(texts) == [mask(t) for t in texts]
    long = ("問い合わせです。" * 300 + "\n") * 4 + "電話 090-1234-5678"  # > 8,000 characters: analysed in pieces
    assert mask(long).endswith("電話 [PHONE]")


def test_threads_share_the_pipeline_safely():
    text = "松本 由美様の電話は（045）123-4567、住所は愛知県名古屋市中区栄3-4-5です"
    expected = mask(text)
    results, errors = [], []

    def work():
        try:
            results.extend(mask(text) for _ in range(20))
        except Exception as err:  # noqa: BLE001 - collected and asserted below
            errors.append(err)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and results == [expected] * 80


def test_legacy_masker_still_importable_for_the_benchmark():
    assert legacy.mask("電話は090-1234-5678です") == "電話は[PHONE]です"
    assert legacy.spans("電話は090-1234-5678です") == [("PHONE", 3, 16)]


def test_importing_the_masker_loads_no_nlp_library():
    code = "import sys, slmops.text.pii; print(any(m in sys.modules for m in ('spacy', 'presidio_analyzer')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_a_process_that_only_masks_loads_neither_torch_nor_transformers():
    """presidio_analyzer would import both (~10 s of start-up for `slmops pii` and the harvester); the analyzer
    loads without them, and they still import normally afterwards."""
    code = (
        "import sys; from slmops.text.pii import mask; masked = mask('山田太郎です', ner=False);"
        "loaded = [m for m in ('torch', 'transformers') if m in sys.modules]; import torch, transformers;"
        "print(masked, loaded)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[NAME]です []"


@pytest.mark.slow
def test_ginza_ner_model_path():
    """The NER model (params pii.ner: true) loads from the installed package and confirms a lone surname."""
    from slmops.text.pii.engine import analyzer

    text = "連絡先は佐々木（090-2222-3333）まで"
    assert mask(text, ner=True) == "連絡先は[NAME]([PHONE])まで"
    from slmops.text.pii.names import GinzaPersonRecognizer

    norm = pii.normalize(text)
    artifacts = analyzer(True).nlp_engine.process_text(norm, "ja")
    by_model = GinzaPersonRecognizer().analyze(norm, ["PERSON"], artifacts)
    assert [norm[r.start : r.end] for r in by_model] == ["佐々木"]  # the statistical model finds it on its own too


def test_cli_masks_stdin_line_by_line():
    proc = slmops("pii", "mask", input="電話は090-1234-5678です\nメールはa@b.jp\n普通の文\n中村健一様\n")
    assert proc.stdout.splitlines() == ["電話は[PHONE]です", "メールは[EMAIL]", "普通の文", "[NAME]様"]


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("受付はナカジマ・リョウでした", "受付は[NAME]でした"),  # a katakana full name across ・
        ("松尾優斗(まつお ゆうと)です", "[NAME]([NAME])です"),  # the tail kanji and the bracketed reading
        ("氏名：後藤 亜美（ゴトウ アミ）", "氏名:[NAME]([NAME])"),
        ("オオサカさんに渡しました", "[NAME]さんに渡しました"),  # a katakana place name with an honorific
        ("Attn: Chloe D'Souza", "Attn: [NAME]"),
        ("The parcel was signed for by Anna Lee.", "The parcel was signed for by [NAME]."),
        ("兵庫県姫路市本町68 姫路ハイツ3階305", "[ADDRESS]"),  # 番地 left out; a room after the floor
        ("大阪市北区中之島5-3-51 グランタワー12号棟803", "[ADDRESS]"),
        ("神戸市中央区港島中町6丁目1 ポートピアホテル本館", "[ADDRESS]"),
    ],
)
def test_general_name_and_address_rules(text, masked):
    assert pii.mask(text) == masked


@pytest.mark.parametrize(
    "text",
    [
        "This is Windows 11 Home",
        "To: Customer Support",
        "注文ID 20241201-5531",  # 8-4 is no My Number grouping, whatever the check digit
        "名古屋市中区栄町3店で購入",
        "山田電機で買った",
    ],
)
def test_general_rules_keep_what_is_not_personal(text):
    assert pii.mask(text) == pii.normalize(text)


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        # a name found once is masked where it comes back bare, in any script; 千葉県 is a place, not the surname
        ("岩崎 拓海様から依頼。岩崎が到着したら連絡します", "[NAME]様から依頼。[NAME]が到着したら連絡します"),
        (
            "Mr. Ikeda Sora wrote again; Ikeda says the box was empty.",
            "Mr. [NAME] wrote again; [NAME] says the box was empty.",
        ),
        ("千葉 健太さんは千葉県在住です", "[NAME]さんは千葉県在住です"),  # a place name before a given name
        ("宛名がカワノ ミサキですが正しくはカワノ ミユキです", "宛名が[NAME]ですが正しくは[NAME]です"),
    ],
)
def test_a_found_name_is_masked_wherever_it_comes_back(text, masked):
    assert pii.mask(text) == masked


def test_a_romaji_reading_after_a_slash_is_the_same_name():
    from slmops.text.pii.mentions import is_romaji

    assert pii.mask("氏名：森田 花子 / Hanako Morita") == "氏名:[NAME] / [NAME]"
    assert pii.mask("氏名 Name: 上野 智子") == "氏名 Name: [NAME]"  # a form's label is no name
    assert pii.mask("担当：田中 / Sales Dept") == "担当:[NAME] / Sales Dept"  # not romaji: a department
    assert all(map(is_romaji, ["Tsubasa", "Satoh", "Ichiro", "Kenji", "Yui"]))
    assert not any(map(is_romaji, ["Sales", "Dept", "Support", "Manager"]))


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("申込者 菅野 ひかり 様", "申込者 [NAME] 様"),
        ("受付は石田 つばさでした", "受付は[NAME]でした"),
        ("鈴木 から届きました", "鈴木 から届きました"),  # a particle is no given name, and a lone surname needs context
    ],
)
def test_hiragana_given_name_after_a_surname(text, masked):
    assert pii.mask(text) == masked


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("福岡県北九州市小倉北区浅野2-14-1 アルモニー小倉1203号室宛", "[ADDRESS]宛"),
        ("広島市南区松原町3-1 エキシティ7F", "[ADDRESS]"),
        ("高知市本町1-2-3 ひまわりハイツ203", "[ADDRESS]"),  # a building name in hiragana with a building word
        ("大阪市北区梅田1-2-3 Tel 06 6345 1111", "[ADDRESS] Tel [PHONE]"),  # a word before a number: no building
        ("レシート番号 0098-7654-3210", "レシート番号 0098-7654-3210"),  # 00… dials abroad: no Japanese phone
    ],
)
def test_building_without_a_building_word_and_impossible_phones(text, masked):
    assert pii.mask(text) == masked
