"""Helpers shared by the sub-commands: a one-line-error parser, number types, device and checkpoint
checks. Imports nothing heavy at module level, so ``--help`` stays fast."""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from pathlib import Path
from typing import Any


def one_line(text: object, limit: int = 400) -> str:
    """``text`` on one line (whitespace collapsed), at most ``limit`` characters."""
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line on stderr (exit status 2)."""

    def error(self, message: str):  # noqa: D401 — argparse's hook
        self.exit(2, f"{self.prog}: error: {one_line(message)} (see {self.prog} --help)\n")


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Keep the examples in the description as written; show defaults that say something."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default in (None, False, []) or "default" in (action.help or ""):
            return action.help or ""
        return super()._get_help_string(action)


def _number(kind, low, strict: bool, what: str):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if value != value or (value <= low if strict else value < low):  # NaN fails too
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value
    parse.__name__ = what
    return parse


positive_int = _number(int, 0, True, "a positive integer")
nonnegative_int = _number(int, 0, False, "an integer >= 0")
positive_float = _number(float, 0.0, True, "a positive number")
nonnegative_float = _number(float, 0.0, False, "a number >= 0")


def parse_kwargs(pairs: list[str], option: str = "--arg") -> dict[str, Any]:
    """``["widths=[8,16,32]", "block=basic"]`` -> ``{"widths": [8, 16, 32], "block": "basic"}``
    (each value parsed as JSON, else kept as a string); ``option`` names the flag in errors."""
    kwargs: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.isidentifier():
            raise ValueError(f"{option}: expected KEY=VALUE with a Python identifier, got {pair!r}")
        try:
            kwargs[key] = json.loads(value)
        except json.JSONDecodeError:
            kwargs[key] = value
    return kwargs


def check_device(value: str | None, option: str = "--device") -> str | None:
    """``value`` if this machine has that device (None = pick automatically); else ValueError."""
    if value is None:
        return None
    # here, not at the top: `--help` must not load torch (cakes_lite/cli/__init__.py)
    import torch

    try:
        device = torch.device(value)
    except (RuntimeError, ValueError):
        raise ValueError(f"{option}: expected cpu, cuda or cuda:N, got {value!r}") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"{option}: {value!r} requested but CUDA is not available on this "
                             f"machine (torch {torch.__version__}); use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"{option}: {value!r} requested but this machine has "
                             f"{torch.cuda.device_count()} CUDA device(s)")
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"{option}: 'mps' requested but it is not available on this machine")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"{option}: expected cpu, cuda or cuda:N, got {value!r}")
    return value


def check_checkpoint(path: str | Path, option: str = "--checkpoint") -> dict[str, Any]:
    """The checkpoint's JSON record, after checking that its safetensors files are complete.

    Raises:
        FileNotFoundError: no checkpoint there.
        ValueError: (one line, naming ``option``) unreadable, truncated or corrupt files.
    """
    # here, not at the top: `--help` must not load torch (cakes_lite/cli/__init__.py)
    from safetensors import safe_open

    from ..train import read_checkpoint_info

    info = read_checkpoint_info(path)
    p = Path(path)
    directory = p.parent if p.suffix == ".json" else p
    for key in ("weights", "state"):
        name = info.get(key)
        if not name:
            continue
        file = directory / name
        if not file.is_file():
            raise ValueError(f"{option} {str(directory)!r}: its {key} file {name!r} is missing")
        try:
            with safe_open(str(file), framework="pt") as f:
                list(f.keys())
        except Exception as e:  # noqa: BLE001 — safetensors raises its own error type
            raise ValueError(f"{option} {str(directory)!r}: {name!r} is truncated or corrupt "
                             f"({type(e).__name__}: {one_line(e, 160)})") from None
    return info


def load_checked(path: str | Path, map_location: Any, option: str = "--checkpoint"):
    """:func:`cakes_lite.train.load_checkpoint` with every failure as one ValueError line."""
    # here, not at the top: `--help` must not load torch (cakes_lite/cli/__init__.py)
    from ..train import load_checkpoint

    check_checkpoint(path, option)
    try:
        return load_checkpoint(path, map_location=map_location)
    except (ValueError, FileNotFoundError):
        raise
    except Exception as e:  # noqa: BLE001 — corrupt tensors, wrong shapes, …
        raise ValueError(f"{option} {str(path)!r}: cannot load it ({type(e).__name__}: "
                         f"{one_line(e, 200)})") from None


def user_error_types() -> tuple[type[BaseException], ...]:
    """Exceptions that mean bad input and are reported as one line, without a traceback."""
    return (ValueError, FileNotFoundError, IsADirectoryError, NotADirectoryError,
            PermissionError)


def report(error: BaseException) -> int:
    """Print ``error`` as one line on stderr; return the exit status 2. An error raised in a
    DataLoader worker arrives wrapped with the worker's traceback in its message: only the
    original message is printed."""
    text = str(error)
    if "\nOriginal Traceback" in text:
        last = [line for line in text.splitlines() if line.strip()][-1]
        text = re.sub(r"^[\w.]+(Error|Exception): ", "", last)
    print(f"error: {one_line(text)}", file=sys.stderr)
    return 2


def no_nan(v):
    """NaN (a class absent from prediction and truth) -> null, so the output is valid JSON."""
    if isinstance(v, dict):
        return {k: no_nan(x) for k, x in v.items()}
    if isinstance(v, list):
        return [no_nan(x) for x in v]
    return None if isinstance(v, float) and math.isnan(v) else v
