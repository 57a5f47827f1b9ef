"""Which environment each CPU layout asks vLLM for, and that it is set only while vLLM starts."""

from __future__ import annotations

import os

import pytest

from branchwise.core import cpu_layout
from branchwise.core.cpu_layout import SMALL_CPU_LAYOUT, environment, layout_environment


@pytest.mark.parametrize(
    ("cores", "on_cpu", "expected"),
    [(2, True, SMALL_CPU_LAYOUT), (4, True, SMALL_CPU_LAYOUT), (8, True, {}), (2, False, {})],
)
def test_auto_is_the_small_layout_only_on_a_small_cpu_machine(
    monkeypatch: pytest.MonkeyPatch, cores: int, on_cpu: bool, expected: object
) -> None:
    monkeypatch.setattr(os, "cpu_count", lambda: cores)
    assert layout_environment("auto", on_cpu=on_cpu) == expected


def test_an_explicit_layout_wins_over_the_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    assert layout_environment("small-cpu", on_cpu=True) == SMALL_CPU_LAYOUT
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    assert layout_environment("stock", on_cpu=True) == {}


def test_the_environment_is_restored_after_the_block(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "7")
    monkeypatch.delenv("VLLM_ENABLE_V1_MULTIPROCESSING", raising=False)
    with pytest.raises(RuntimeError), environment(SMALL_CPU_LAYOUT):
        assert os.environ["OMP_NUM_THREADS"] == "1"
        assert os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] == "0"
        raise RuntimeError("vLLM failed to start")
    assert os.environ["OMP_NUM_THREADS"] == "7"
    assert "VLLM_ENABLE_V1_MULTIPROCESSING" not in os.environ


def test_auto_asks_vllm_for_the_platform_only_on_a_small_machine(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    asked: list[bool] = []

    def on_cpu() -> bool:
        asked.append(True)
        return True

    monkeypatch.setattr(cpu_layout, "_vllm_on_cpu", on_cpu)
    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    assert layout_environment("auto") == {} and asked == []
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    assert layout_environment("auto") == SMALL_CPU_LAYOUT and asked == [True]
