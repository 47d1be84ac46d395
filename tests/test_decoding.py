"""Stop strings: never part of an answer, even when a stream splits one across pieces."""

from __future__ import annotations

import pytest

from slmops.inference.decoding import StopHolder, cut_at_stop


def test_cut_at_stop_cuts_at_the_earliest_stop():
    assert cut_at_stop("abc END def STOP", ["STOP", "END"]) == ("abc ", True)
    assert cut_at_stop("abc", ["x"]) == ("abc", False)


@pytest.mark.parametrize("pieces", [["ab", "cE", "ND", "xyz"], ["abcEND"], ["a", "b", "c", "E", "N", "D", "x"]])
def test_a_stream_never_sends_the_stop_string_or_what_follows(pieces):
    holder = StopHolder(["END"])
    sent = "".join(holder.feed(p) for p in pieces) + holder.flush()
    assert sent == "abc" and holder.stopped


def test_a_stream_sends_a_held_back_prefix_once_it_is_not_a_stop():
    holder = StopHolder(["END"])
    assert holder.feed("abcE") == "abc"  # "E" may start "END": held back
    assert holder.feed("x") == "Ex"
    assert holder.feed("EN") == ""
    assert holder.flush() == "EN" and not holder.stopped  # generation ended: the held tail is sent
