"""Shared pytest set-up: `import cakes_lite` from the repo root, and a seeded torch per test."""

from __future__ import annotations

import random
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from cakes_lite.fast import autotune  # noqa: E402


@pytest.fixture(autouse=True)
def _seed() -> None:
    """Every test starts from the same RNG state (torch, python), so failures reproduce."""
    torch.manual_seed(0)
    random.seed(0)


@pytest.fixture
def one_thread():
    """Tiny tensors: one intra-op thread is faster and immune to other jobs on shared cores."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def no_autotune():
    """Every CAKES layer runs the static "mixed" plan (nothing timed: quick, deterministic)."""
    was = autotune.autotune_enabled()
    autotune.set_autotune(False)
    yield
    autotune.set_autotune(was)
