"""Shared bookkeeping of the timing benchmarks: what machine a result was measured on, and
finishing a result file (run time, load after, written atomically). Import after torch."""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

import torch

from cakes_lite._helpers import atomic_write_text


def machine_info() -> dict:
    """CPU model, vector ISA torch dispatches to, threads, ISA caps from the environment."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu, "isa": torch.backends.cpu.get_cpu_capability(),
        "ATEN_CPU_CAPABILITY": os.environ.get("ATEN_CPU_CAPABILITY"),
        "ONEDNN_MAX_CPU_ISA": os.environ.get("ONEDNN_MAX_CPU_ISA"),
        "threads": torch.get_num_threads(), "torch": torch.__version__,
        "cpu_count": os.cpu_count(), "glibc_tunables": os.environ.get("GLIBC_TUNABLES"),
    }


def finish(result: dict, t_start: float, out: str | Path) -> None:
    """Record the run time (since ``t_start``, a ``time.perf_counter()``) and the load average
    after the run in ``result``, and write it to ``out`` as JSON (never half-written)."""
    result["seconds"] = time.perf_counter() - t_start
    result["load_after"] = os.getloadavg()
    atomic_write_text(out, json.dumps(result, indent=1) + "\n")
