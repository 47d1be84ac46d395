"""benchmarks/student_agreement.py: agreement, majority vote and "any right" are counted over the same rows."""

from benchmarks.student_agreement import agreement, confusion, sentence_views, view_vote


def test_two_students_that_err_on_different_rows():
    expected = ["a", "b", "c", "d"]
    figures = agreement({"x": ["a", "b", "x", "d"], "y": ["a", "y", "c", "d"]}, expected)
    assert figures["accuracy"] == {"x": 0.75, "y": 0.75}
    assert figures["agreement"] == {"x | y": 0.5}
    assert figures["any_right"] == 1.0
    assert figures["majority_vote"] == 0.75  # two models tie on every row they differ on: the first one's label


def test_the_majority_outvotes_one_wrong_student_and_no_answer_counts_wrong():
    expected = ["a", "b", "c"]
    labels = {"x": ["z", "b", None], "y": ["a", "b", None], "z": ["a", "q", None]}
    figures = agreement(labels, expected)
    assert figures["majority_vote"] == 2 / 3
    assert figures["any_right"] == 2 / 3
    assert figures["accuracy"]["z"] == 1 / 3


def test_confusion_shows_a_default_class_and_where_each_labels_rows_went():
    expected = ["a", "a", "b", "b", "c", "c"]
    figures = confusion(["a", "a", "a", "a", "a", "c"], expected)  # "a" is the default class
    assert figures["predicted"] == {"a": 5, "c": 1}
    assert figures["lost_to"] == {"a": 0, "b": 1, "c": 1}
    spread = confusion(["b", "c", "a", None, "a", "b"], expected)  # every error a different label
    assert spread["lost_to"] == {"a": 2, "b": 2, "c": 2}


def test_sentence_views_are_the_whole_input_then_each_sentence_of_two_or_more():
    text = "請求が二重です。返金してください!急ぎです"
    assert sentence_views(text) == [text, "請求が二重です。", "返金してください!", "急ぎです"]
    assert sentence_views("ログインできません。") == ["ログインできません。"]  # one sentence: the whole input alone
    # a 2-character "sentence" is no view
    assert sentence_views("はい。ログインできません") == ["はい。ログインできません"]


def test_view_vote_takes_the_majority_and_on_a_tie_the_whole_inputs_label():
    assert view_vote(["a", "b", "b"]) == "b"
    assert view_vote(["a", "b", "c"]) == "a"
    assert view_vote(["a", "b", "b", "c", "c"]) == "b"  # the whole input's label is not among the tied: the first
    assert view_vote([None, None, "a"]) is None  # no valid answer on most views counts as that
