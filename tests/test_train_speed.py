"""Training at the speed of the hardware, checked on a CPU without training anything: the method ``auto`` picks,
the throughput switches reaching ``SFTConfig``, and padding-free packing keeping each example to itself."""

from __future__ import annotations

import pytest

from slmops.config import FinetuneConfig, load_params
from slmops.train.method import choose_method
from tests.projects import REVIEWS, TRIAGE


def test_auto_is_qlora_on_cuda_and_lora_on_a_cpu_with_the_reason():
    assert FinetuneConfig().method == "auto"
    method, reason = choose_method("auto", cuda=False)
    assert method == "lora" and reason.startswith("auto: no CUDA device") and "finetune.method: qlora" in reason
    assert choose_method("auto", cuda=True) == (
        "qlora",
        "auto: CUDA device found, so QLoRA (4-bit base, LoRA adapters)",
    )


@pytest.mark.parametrize("cuda", [False, True])
@pytest.mark.parametrize("method", ["qlora", "lora", "full"])
def test_a_method_set_explicitly_is_honoured(method, cuda):
    chosen, reason = choose_method(method, cuda=cuda)
    assert chosen == method and reason.startswith("set by finetune.method")
    assert ("slow" in reason) == (method == "qlora" and not cuda)


def test_the_example_projects_keep_qlora_so_their_figures_stand():
    for root in (TRIAGE, REVIEWS):
        for profile in ("demo", "smoke"):
            assert load_params(profile, project=root).finetune.method == "qlora"
