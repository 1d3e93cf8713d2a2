"""Small shared helpers: argument validation/normalisation and atomic file writes.

One home for what every layer needs (as timm's ``layers/helpers.py``): :func:`triple` and
:func:`check_kernel_size` validate conv geometry for ops, baselines, search and models;
:func:`atomic_write` / :func:`atomic_write_text` write layouts, checkpoints, videos and benchmark
results via a temporary file and a rename, so no reader ever sees a half-written file.
This module imports nothing else from cakes_lite.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

__all__ = ["atomic_write", "atomic_write_text", "check_kernel_size", "default_file_mode", "triple"]


def triple(value: int | tuple[int, int, int] | list[int], what: str) -> tuple[int, int, int]:
    """Normalise an int or a 3-sequence of positive ints (a stride) to a 3-tuple."""
    if isinstance(value, bool):
        raise ValueError(f"{what}: expected a positive int or a (d, h, w) tuple, got {value!r}")
    given = value
    if isinstance(value, int):
        value = (value, value, value)
    if (
        not isinstance(value, (tuple, list))
        or len(value) != 3
        or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)
    ):
        raise ValueError(f"{what}: expected a positive int or a (d, h, w) tuple, got {given!r}")
    return tuple(value)  # type: ignore[return-value]


def check_kernel_size(kernel_size: object) -> int:
    """Return ``kernel_size`` if it is an odd positive int, else raise ValueError."""
    if (
        isinstance(kernel_size, bool)
        or not isinstance(kernel_size, int)
        or kernel_size < 1
        or kernel_size % 2 == 0
    ):
        raise ValueError(f"kernel_size: expected an odd positive int, got {kernel_size!r}")
    return kernel_size


def default_file_mode(path: str | os.PathLike) -> None:
    """Give a file made by ``tempfile.mkstemp`` (mode 0600) the usual 0666 & ~umask mode."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


def atomic_write(path: str | os.PathLike, write: Callable[[str], None], suffix: str = ".tmp") -> None:
    """Create ``path`` atomically: ``write(tmp_path)`` fills a temporary file in the same folder,
    which then gets the usual file mode and is renamed over ``path`` (never half-written; the
    temporary file is removed if ``write`` fails). ``suffix`` lets writers that pick a format by
    extension (e.g. PyAV) see the right one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    os.close(fd)
    try:
        write(tmp)
        default_file_mode(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` via a temporary file and a rename (never half-written)."""
    atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
