"""The real-model speed and memory benchmark, run end to end on the tiny GGUF chat model."""

import math

import pytest

from agents.pretrained import CACHE_VARIABLE
from benchmarks import llm_throughput


@pytest.mark.slow  # two training processes besides the timed parts
def test_the_llm_throughput_benchmark_measures_both_sides_of_each_ratio(tiny_gguf, tmp_path, monkeypatch):
    monkeypatch.setenv(CACHE_VARIABLE, str(tmp_path / "cache"))  # the memory runs' processes convert it there
    data = llm_throughput.measure(quick=True, spec=str(tiny_gguf))
    rollout = data["rollout"]
    for side in ("cached", "uncached"):
        assert rollout[side]["steps"] >= data["episodes"] and rollout[side]["seconds"] > 0
    rates = [*data["update_tokens_per_second"].values(), *data["peak_memory_mib"].values()]
    assert all(math.isfinite(r) and r > 0 for r in rates)
    table = llm_throughput.table(data)
    assert "| rollout agent tokens/s: without the KV cache -> with it |" in table
    assert "| PPO update tokens/s: full fine-tuning -> LoRA rank 16 |" in table


def test_a_memory_run_reports_its_own_peak_and_not_the_benchmark_process_s(tmp_path):
    # A parent holding 1 GiB: a child started by subprocess (vfork, then exec) would report it as its
    # own peak through getrusage; the high-water mark of its own memory is a fraction of that.
    import subprocess
    import sys

    import numpy as np

    held = np.ones(2**27)  # 1 GiB, touched
    done = subprocess.run(
        [sys.executable, "-c", llm_throughput.PEAK_MEMORY, "--help"], capture_output=True, text=True, check=False
    )
    kib = next(int(line.split()[1]) for line in done.stdout.splitlines() if line.startswith("peak_kib"))
    assert 0 < kib < held.nbytes / 1024 / 2
