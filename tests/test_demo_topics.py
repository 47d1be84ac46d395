"""The demo teacher's topic bank: what it writes about is what it knows, and it labels what it writes."""

from slmops.demo.generate import generate
from slmops.demo.phrasebank import PROBLEMS, compose
from slmops.demo.teacher import category_scores, classify
from slmops.demo.topics import ENGLISH_FRAMES, FOLLOW_UPS, NOUN_FRAMES, NOUNS, SITUATIONS, framed_nouns, topic_sentence


def test_every_topic_is_labelled_its_own_category_by_the_teacher():
    wrong = [
        (category, text)
        for category in SITUATIONS
        for text in [*SITUATIONS[category], *framed_nouns(category)] + [SITUATIONS[category][0] + f for f in FOLLOW_UPS]
        if classify(text) != category
    ]
    assert wrong == []


def test_frames_and_follow_ups_carry_no_category():
    bare = [f.format("それ") for f in NOUN_FRAMES] + [f.format("it") for f in ENGLISH_FRAMES] + list(FOLLOW_UPS)
    assert {text: s for text in bare for s in category_scores(text).values() if s} == {}


def test_the_teacher_writes_mostly_from_its_topics_not_its_few_whole_problems():
    for category in SITUATIONS:
        texts = {compose(category, seed * 7919) for seed in range(300)}
        from_problems = sum(any(p in t for p in PROBLEMS[category]) for t in texts)
        topics = {topic_sentence(category, seed * 7919) for seed in range(300)}
        assert from_problems < len(texts) / 2
        assert len(topics) >= (len(SITUATIONS[category]) + len(NOUNS[category])) * 0.8


def test_the_teacher_corpus_is_unlabelled_teacher_writing_about_every_category_and_never_a_test_input():

    sets = generate(1, n_seed=70, n_pool=70, n_test=70, n_corpus=7, n_teacher_corpus=14)
    written = [r for r in sets["corpus"] if r["id"].startswith("corpus-t-")]
    assert len(sets["corpus"]) == 21 and len(written) == 14
    assert all(set(r) == {"id", "input"} for r in written)  # unlabelled: pretraining text only
    assert {classify(r["input"]) for r in written} == set(PROBLEMS)
    assert not {r["input"] for r in written} & {r["input"] for r in sets["test"]}
