"""The demo teacher honours a self-instruct request's attributes (register, length, channel, noise)."""

from __future__ import annotations

import re

import pytest

from slmops.demo.phrasebank import PROBLEMS
from slmops.demo.styles import SECOND_ISSUES, parse_attributes, restyle
from slmops.demo.teacher import answer, classify, write_inquiry
from slmops.tasks import load_task
from tests.projects import TRIAGE

task = load_task("ticket_triage", TRIAGE)
BASE = {"register": "polite", "length": "short", "channel": "chat", "noise": "none"}


def _write(category: str, example: str = "例の問い合わせです。", **cell: str) -> str:
    return answer(task.build_augment_messages(category, example, BASE | cell))


def test_parse_attributes_reads_the_prompt_line():
    assert parse_attributes("register=keigo, channel=mail") == {"register": "keigo", "channel": "mail"}
    assert parse_attributes("") == {}


def test_without_attributes_the_inquiry_is_unchanged():
    messages = task.build_augment_messages("billing", "例の問い合わせです。")
    assert answer(messages) == write_inquiry("billing", "例の問い合わせです。")


def test_register_channel_and_length_show_in_the_text():
    keigo = _write("shipping", register="keigo", channel="mail", length="long")
    assert keigo.startswith("件名: お問い合わせの件\nいつも大変お世話になっております。")
    assert "何卒よろしくお願い申し上げます。" in keigo and "先週から何度か試しましたが" in keigo
    assert _write("shipping", channel="form").startswith("【お問い合わせ内容】")
    plain = _write("shipping", register="plain")
    assert plain.endswith("よろしく。") and "申し上げます" not in plain.removesuffix("よろしく。")[-12:]


def test_noise_kinds():
    text = "荷物が届きません。ABC123です。"
    assert restyle(text, {"noise": "english"}, 0).endswith("Could you check this? Thanks.")
    assert restyle(text, {"noise": "width"}, 0) == "荷物が届きません｡ＡＢＣ１２３です｡"
    typo = restyle(text, {"noise": "typos"}, 3)
    assert len(typo) == len(text) + 1 and re.search(r"([ぁ-ゖ])\1", typo)
    assert restyle(text, {"noise": "two_issues"}, 0, fits=lambda t, issue: False) == text  # nothing fits: none
    assert len(restyle(text, {"noise": "two_issues"}, 0)) > len(text)


@pytest.mark.parametrize("category", sorted(PROBLEMS))
@pytest.mark.parametrize("noise", ["none", "typos", "width", "english", "two_issues"])
def test_styled_inquiries_keep_their_category(category, noise):
    for register in ("plain", "polite", "keigo"):
        text = _write(category, f"例{register}", register=register, noise=noise, length="long", channel="mail")
        assert classify(text) == category, text


def test_a_second_issue_is_of_another_kind_and_leaves_the_first_the_main_one():
    texts = [_write("billing", f"例{i}", noise="two_issues") for i in range(40)]
    issues = {t: next((issue for issue in SECOND_ISSUES if t.endswith(issue)), None) for t in texts}
    # Where every second issue would outweigh the first in the rules' eyes (a topic named by one keyword), the
    # teacher adds none; most texts still get one.
    assert sum(issue is not None for issue in issues.values()) >= 20
    for text, issue in issues.items():
        assert classify(text) == "billing" and (issue is None or classify(issue) != "billing"), text
