"""Testbed fixtures: the testbed scripts on sys.path, and one vLLM engine per model per session."""

from __future__ import annotations

import gc
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

TESTBED = Path(__file__).resolve().parents[2] / "examples" / "testbed"
if str(TESTBED) not in sys.path:
    sys.path.insert(0, str(TESTBED))

POLICY_DIR = TESTBED / "models" / "policy"
PRM_DIR = TESTBED / "models" / "prm"


@pytest.fixture(scope="session")
def testbed_policy_llm() -> Iterator[Any]:
    """The committed policy served by vLLM (started once: engine start-up costs ~30 s)."""
    from vllm_engines import policy_llm

    llm = policy_llm(POLICY_DIR, seed=0)
    yield llm
    del llm
    gc.collect()


@pytest.fixture(scope="session")
def testbed_prm_llm() -> Iterator[Any]:
    """The committed PRM served on vLLM's pooling path (token_classify)."""
    from vllm_engines import prm_llm

    llm = prm_llm(PRM_DIR)
    yield llm
    del llm
    gc.collect()
