"""MinHash near-duplicate index: finds near-copies, leaves different inquiries alone, same in every process."""

from __future__ import annotations

import subprocess
import sys

from slmops.text.dedup import NearDupIndex, jaccard, shingles, signature
from tests.conftest import REPO

BASE = "先週購入したノートPCの電源が入りません。初期不良なので交換してください。"


def test_near_copies_are_found_and_different_inquiries_are_not():
    index = NearDupIndex(threshold=0.8)
    assert index.add_if_new(BASE)
    assert not index.add_if_new("先週購入したノートPCの電源が入りません!初期不良なので、交換してください。")
    assert not index.add_if_new(BASE.replace("先週", "はい、先週"))  # a few characters added
    assert index.add_if_new("請求金額が明細と合いません。確認をお願いします。")  # another inquiry
    assert index.add_if_new("先週購入したタブレットの画面が割れていました。返品できますか。")  # same opening only
    assert len(index) == 3


def test_minhash_estimate_tracks_the_exact_jaccard():
    other = "先週購入したノートPCが充電できません。初期不良なので交換してください。"
    a, b = shingles(BASE), shingles(other)
    exact = len(a & b) / len(a | b)
    assert abs(jaccard(signature(BASE), signature(other)) - exact) < 0.12


def test_signatures_are_identical_across_processes():
    code = f"from slmops.text.dedup import signature; print(signature({BASE!r}).tolist())"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == str(signature(BASE).tolist())
