"""Where a transformers model runs: CUDA in bfloat16 when a GPU is there, else the CPU in float32; parity's
fp32 comparison can always ask for the CPU. The CUDA test runs only where torch sees a GPU."""

from __future__ import annotations

import pytest
import torch

from slmops.inference.chat_model import ChatModel, pick_device
from slmops.tasks import load_task
from tests.projects import TRIAGE

TASK = load_task("ticket_triage", TRIAGE)
GPU = torch.cuda.is_available()


def test_the_cpu_is_float32_and_auto_follows_the_hardware():
    assert pick_device("cpu") == ("cpu", torch.float32)
    assert pick_device("auto")[0] == ("cuda" if GPU else "cpu")


def test_a_model_asked_for_the_cpu_answers_there_in_float32(tiny_models):
    model = ChatModel.load(tiny_models["model"], device="cpu")
    assert model.device.type == "cpu" and next(model.model.parameters()).dtype == torch.float32
    assert model.chat(TASK.build_messages("パスワードを忘れました"), max_tokens=4).completion_tokens > 0


@pytest.mark.gpu
@pytest.mark.skipif(not GPU, reason="needs a CUDA device")
def test_on_a_gpu_auto_loads_on_cuda_in_bfloat16_and_answers(tiny_models):
    model = ChatModel.load(tiny_models["model"])
    assert model.device.type == "cuda"
    assert next(model.model.parameters()).dtype == (torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32)
    completion = model.chat(TASK.build_messages("パスワードを忘れました"), max_tokens=4, scores=True, logprobs=2)
    assert completion.completion_tokens > 0 and completion.min_token_prob is not None
