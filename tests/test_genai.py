"""The ONNX Runtime GenAI form end to end on the tiny Llama: built by the quantize stage (GenAI's model builder,
offline, with the demo's own tokenizer), parity-checked locally and behind a real server, and served to the
official ``openai`` client with streaming, stop, logprobs, max_completion_tokens and usage."""

from __future__ import annotations

import json

import openai
import pytest

from slmops.config import ParityThresholds, QuantizeConfig, ServeConfig
from slmops.evaluate import parity
from slmops.export import quantize
from slmops.inference.chat_model import ChatModel
from slmops.serve.app import BackgroundServer, create_app, serve_in_background
from slmops.tasks import load_task
from tests.projects import TRIAGE

USER = [{"role": "user", "content": "注文した商品が届きません"}]


@pytest.fixture(scope="module")
def forms(tiny_models, tmp_path_factory):
    """The quantize stage with the GenAI form among its candidates."""
    out = tmp_path_factory.mktemp("genai_quantize")
    cfg = QuantizeConfig(weight_type="int8", candidates=["int8", "genai_int4"])
    return quantize.run(cfg, model_dir=tiny_models["model"], out_dir=out)


@pytest.fixture(scope="module")
def client(forms):
    app = create_app(ChatModel.load(forms.candidates["genai_int4"].dir), "tiny", None, ServeConfig(max_tokens_cap=32))
    with BackgroundServer(app) as srv:
        yield openai.OpenAI(base_url=srv.base_url, api_key="unused", max_retries=0)


def test_quantize_writes_a_genai_int4_candidate(forms):
    genai = forms.candidates["genai_int4"]
    config = json.loads((genai.dir / "genai_config.json").read_text())
    assert config["model"]["type"] == "llama" and (genai.dir / "tokenizer.json").exists()
    assert 0 < genai.size_mb < forms.fp32_size_mb  # 4-bit weights
    model = ChatModel.load(genai.dir)
    assert model.backend == "onnxruntime-genai"
    manifest = json.loads((forms.fp32_dir.parent / "manifest.json").read_text())
    assert "genai_int4" in json.dumps(manifest)


def test_genai_tokens_and_logprobs_follow_onnx_fp32(forms):
    """Same prompt ids, same greedy tokens, log-probabilities within int4's error of fp32's."""
    fp32, genai = ChatModel.load(forms.fp32_dir), ChatModel.load(forms.candidates["genai_int4"].dir)
    assert genai.encode(USER) == fp32.encode(USER)
    ours, theirs = genai.chat(USER, 8, logprobs=0), fp32.chat(USER, 8, logprobs=0)
    assert ours.text == theirs.text and ours.completion_tokens == theirs.completion_tokens
    for a, b in zip(ours.logprobs, theirs.logprobs, strict=True):
        assert a["token"] == b["token"] and a["logprob"] == pytest.approx(b["logprob"], abs=0.1)


def test_parity_chain_checks_the_genai_form_and_its_server(forms, tiny_models, tmp_path):
    task = load_task("ticket_triage", TRIAGE)
    result = parity.run(
        task,
        test=tiny_models["prepared"] / "test.jsonl",
        base_model="unused",
        student=tiny_models["model"],
        onnx_fp32=forms.fp32_dir,
        quantized={"genai_int4": forms.candidates["genai_int4"].dir},
        out_dir=tmp_path,
        serve=serve_in_background,
        max_tokens=8,
        examples=4,
    )
    steps = {s.step: s for s in result.figures.steps}
    assert steps["genai_int4"].reference == "onnx_fp32"
    assert steps["served_genai_int4"].output_agreement == 1.0  # the server answers as the form does
    decision = parity.decide_parity(
        result.figures, ParityThresholds(min_output_agreement=0.0, min_label_agreement=0.0), "genai_int4"
    )
    assert {"parity_genai_int4", "parity_served_genai_int4"} <= set(decision.checks)


def test_openai_client_plain_stop_and_budget(client):
    plain = client.chat.completions.create(model="tiny", messages=USER, max_completion_tokens=16)
    text = plain.choices[0].message.content
    assert plain.usage.completion_tokens == 16 and plain.choices[0].finish_reason == "length" and len(text) >= 5
    stop = text[3:5]
    stopped = client.chat.completions.create(model="tiny", messages=USER, max_completion_tokens=16, stop=[stop])
    assert stopped.choices[0].message.content == text[: text.find(stop)]
    assert stopped.choices[0].finish_reason == "stop"
    short = client.chat.completions.create(model="tiny", messages=USER, max_completion_tokens=3)
    assert short.usage.completion_tokens == 3 and text.startswith(short.choices[0].message.content)
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model="tiny", messages=USER, max_completion_tokens=1000)
    assert err.value.param == "max_completion_tokens"


def test_openai_client_stream_with_usage(client):
    plain = client.chat.completions.create(model="tiny", messages=USER, max_completion_tokens=8)
    chunks = list(
        client.chat.completions.create(
            model="tiny", messages=USER, max_completion_tokens=8, stream=True, stream_options={"include_usage": True}
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == plain.choices[0].message.content
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 8
    assert chunks[-1].usage.prompt_tokens == plain.usage.prompt_tokens


def test_openai_client_logprobs_from_genai_logits(client):
    answer = client.chat.completions.create(
        model="tiny", messages=USER, max_completion_tokens=5, logprobs=True, top_logprobs=3
    )
    content = answer.choices[0].logprobs.content
    assert len(content) == answer.usage.completion_tokens == 5
    for entry in content:
        assert entry.logprob <= 0 and len(entry.top_logprobs) == 3
        assert entry.top_logprobs[0].token == entry.token  # greedy: the chosen token is the likeliest
        assert entry.top_logprobs[0].logprob == pytest.approx(entry.logprob)


def test_a_seed_reproduces_a_sampled_genai_answer(client):
    def ask(seed: int) -> str:
        answer = client.chat.completions.create(
            model="tiny", messages=USER, max_completion_tokens=12, temperature=1.0, seed=seed
        )
        return answer.choices[0].message.content

    first = ask(11)
    assert ask(11) == first
    assert any(ask(seed) != first for seed in (12, 13, 14))


def test_the_registered_pyfunc_answers_with_genai_as_the_server_does(forms, tmp_path):
    """A registered genai_int4 version loads with onnxruntime-genai (no slmops) and answers as the server."""
    from types import SimpleNamespace

    from slmops.registry.aliases import PORTABLE_REQUIREMENTS, task_spec
    from slmops.registry.onnx_pyfunc import OnnxChatModel

    task = load_task("ticket_triage", TRIAGE)
    (tmp_path / "task.json").write_text(json.dumps(task_spec(task), ensure_ascii=False))
    folder = forms.candidates["genai_int4"].dir
    pyfunc = OnnxChatModel()
    pyfunc.load_context(SimpleNamespace(artifacts={"onnx_model": str(folder), "task": str(tmp_path / "task.json")}))
    texts = ["注文した商品がまだ届きません", "パスワードを忘れました"]
    served = ChatModel.load(folder)
    expected = [served.chat(task.build_messages(t), max_tokens=10).text for t in texts]
    assert pyfunc.genai is not None and pyfunc.predict(None, texts, {"max_tokens": 10}) == expected
    assert "onnxruntime-genai" in PORTABLE_REQUIREMENTS


def test_a_folder_the_builder_cannot_read_fails_naming_the_builder(tmp_path):
    from slmops.export.genai import build_genai

    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "config.json").write_text(json.dumps({"model_type": "no-such-architecture"}))
    with pytest.raises(RuntimeError, match="GenAI's model builder failed"):
        build_genai(tmp_path / "model", tmp_path / "out")
    assert not (tmp_path / "out" / "genai_config.json").exists()


def test_the_genai_form_quantizes_in_the_block_size_asked_for(tiny_models, tmp_path):
    """``quantize.int4_block_size`` reaches the builder (0.18 reads ``block_size``; it ignores unknown keys)."""
    import onnx

    from slmops.export.genai import build_genai

    out = build_genai(tiny_models["model"], tmp_path / "genai", "int4", block_size=64)
    graph = onnx.load(str(out / "model.onnx"), load_external_data=False).graph
    sizes = {a.i for n in graph.node if n.op_type == "MatMulNBits" for a in n.attribute if a.name == "block_size"}
    assert sizes == {64}


PROMPTS = [
    [{"role": "user", "content": "注文した商品が届きません"}],
    [{"role": "user", "content": "パスワードを忘れました。ログインできないので再設定の方法を教えてください"}],
    [{"role": "user", "content": "請求書"}],
]


def test_greedy_genai_rows_share_decode_steps_and_answer_as_one_by_one(forms):
    """A batch of prompts of different lengths decodes as rows of one generator: as many steps as its longest
    answer, not their sum, and each row's tokens, logprobs, budget and stop are its one-by-one answer's."""
    model = ChatModel.load(forms.candidates["genai_int4"].dir)
    limits = [12, 4, 9]
    alone = [model.chat(m, limit, logprobs=2) for m, limit in zip(PROMPTS, limits, strict=True)]
    before = model.steps
    together = model.chat_batch(PROMPTS, limits, logprobs=2)
    assert model.steps - before == max(a.completion_tokens for a in alone) < sum(a.completion_tokens for a in alone)
    for ours, theirs in zip(together, alone, strict=True):
        assert ours.text == theirs.text and ours.completion_tokens == theirs.completion_tokens
        assert ours.finish_reason == theirs.finish_reason
        for a, b in zip(ours.logprobs, theirs.logprobs, strict=True):
            assert a["token"] == b["token"] and a["logprob"] == pytest.approx(b["logprob"], abs=1e-3)
    stop = [alone[0].text[2:4]]
    stopped = model.chat_batch(PROMPTS, 12, stop=stop)
    assert [s.text for s in stopped] == [model.chat(m, 12, stop=stop).text for m in PROMPTS]
    assert stopped[0].finish_reason == "stop" and stopped[0].text == alone[0].text[: alone[0].text.find(stop[0])]


def test_requests_that_queue_behind_a_genai_answer_are_decoded_together(forms):
    """The server's batcher: requests arriving while GenAI decodes a long answer share the next generator."""
    import threading
    import time

    from slmops.serve.batcher import Batcher

    model = ChatModel.load(forms.candidates["genai_int4"].dir)
    alone = [model.chat(m, 6) for m in PROMPTS]
    answers: dict[int, object] = {}
    asking, first_done = threading.Semaphore(0), threading.Event()

    def ask(i: int, messages, limit: int) -> None:
        if i >= 0:
            asking.release()  # just before its request is queued
        answers[i] = batcher.generate(model, messages, limit)

    def after_batch(size: int) -> None:
        """Once the long answer is decoded, wait for the three to queue behind it: on a loaded machine they could
        start only after it ended, and be taken one batch at a time."""
        if not first_done.is_set():
            first_done.set()
            for _ in PROMPTS:
                asking.acquire(timeout=60)
            time.sleep(0.05)

    batcher = Batcher(max_batch_size=8, on_batch=after_batch).start()

    try:
        before = model.steps
        long = threading.Thread(target=ask, args=(-1, USER, 200))
        long.start()
        while model.steps == before:  # wait until the long answer is decoding
            time.sleep(0.001)
        short = [threading.Thread(target=ask, args=(i, m, 6)) for i, m in enumerate(PROMPTS)]
        for thread in short:
            thread.start()
        for thread in [*short, long]:
            thread.join(timeout=120)
    finally:
        batcher.stop()
    assert [answers[i].text for i in range(len(PROMPTS))] == [a.text for a in alone]
    used = model.steps - before
    assert used < sum(a.completion_tokens for a in answers.values())
    assert used == answers[-1].completion_tokens + max(a.completion_tokens for a in alone)


def test_genai_prefill_gives_the_lm_head_each_rows_last_real_token_only(forms):
    """GenAI pads a batch's prompts on the right. The form's graph computes logits at one position a row (its last
    real token, read from the attention mask), so a short row's first logits are its own, not a padding's."""
    import numpy as np
    import onnxruntime_genai as og

    model = ChatModel.load(forms.candidates["genai_int4"].dir)
    encoded = [model.encode(m) for m in PROMPTS]
    assert len({len(ids) for ids in encoded}) == len(encoded)  # three lengths: two rows end in padding

    def prefill_logits(rows: list[list[int]]):
        batch = np.full((len(rows), max(map(len, rows))), model.pad_token_id, dtype=np.int32)
        for i, ids in enumerate(rows):
            batch[i, : len(ids)] = ids
        params = og.GeneratorParams(model.model)
        params.set_search_options(batch_size=len(rows), max_length=batch.shape[1] + 2, do_sample=False)
        generator = og.Generator(model.model, params)
        generator.append_tokens(batch)
        return np.array(generator.get_output("logits"))

    together = prefill_logits(encoded)
    assert together.shape[:2] == (len(encoded), 1)
    for row, ids in zip(together, encoded, strict=True):
        np.testing.assert_allclose(row[0], prefill_logits([ids])[0, 0], atol=1e-4)
