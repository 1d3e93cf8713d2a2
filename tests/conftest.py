"""Shared pytest set-up: `import cakes_lite` from the repo root, a seeded torch per test, and
fixtures that pin the threads and switch plan autotuning on or off."""

from __future__ import annotations

import random
import sys
from contextlib import contextmanager
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


@contextmanager
def autotune_switched(enabled: bool):
    """Plan autotuning on or off with an empty cache; the previous switch restored after."""
    was = autotune.autotune_enabled()
    autotune.set_autotune(enabled)
    try:
        yield
    finally:
        autotune.set_autotune(was)


@pytest.fixture
def fresh_autotune():
    """Autotuning on, nothing measured yet."""
    with autotune_switched(True):
        yield


@pytest.fixture
def no_autotune():
    """Every CAKES layer runs the static "mixed" plan (nothing timed: quick, deterministic)."""
    with autotune_switched(False):
        yield
