"""Shared pytest fixtures. ``judge_double`` starts an OpenAI-compatible server on 127.0.0.1."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

_TESTS = Path(__file__).resolve().parent
try:
    import longreward  # noqa: F401
except ModuleNotFoundError:
    # A plain checkout that was not pip-installed: test the src tree directly.
    sys.path.insert(0, str(_TESTS.parent / "src"))
if str(_TESTS) not in sys.path:
    sys.path.insert(0, str(_TESTS))

from judge_double import JudgeDouble  # noqa: E402


@pytest.fixture
def judge_double() -> Iterator[JudgeDouble]:
    """A started judge double; ``.base_url`` ends with ``/v1``. Stopped after the test."""
    with JudgeDouble() as double:
        yield double
