"""Shared start-up for the timing benchmarks: steady malloc behaviour before torch is imported.

CPU conv timings are bimodal from page faults unless glibc keeps big buffers mapped (freed buffers
above the default mmap threshold go back to the OS and fault in again on the next call), so each
benchmark re-executes itself once with these tunables set.
"""

import os
import sys

GLIBC_TUNABLES = "glibc.malloc.mmap_threshold=67108864:glibc.malloc.trim_threshold=268435456"


def reexec_with_malloc_tunables() -> None:
    """Re-run the current script with GLIBC_TUNABLES set (no-op when it already is)."""
    if os.environ.get("GLIBC_TUNABLES") != GLIBC_TUNABLES:
        os.environ["GLIBC_TUNABLES"] = GLIBC_TUNABLES
        os.execv(sys.executable, [sys.executable, *sys.argv])
