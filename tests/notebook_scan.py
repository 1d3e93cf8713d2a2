"""Find error-like outputs in executed notebooks: what a reader of the executed copy would take
for a broken step.

Flagged, in any code cell:

* an ``error`` output (a cell that raised; cells tagged ``raises-exception`` may);
* "Traceback (most recent call last)" or a line starting with ``SomeError:`` /
  ``SomeException:`` in any text output (stdout, stderr, plain text, markdown, HTML) — a caught
  exception printed as if it were a result;
* a Python warning in stderr (``…Warning:``) — cells tagged ``allow-warnings`` may show one on
  purpose (a notebook that teaches a warning says so in the cell's tags);
* "Error displaying widget" (a widget model that a reopened notebook cannot find).

tqdm's text bars on stderr are not errors and pass. Used by ``tests/test_notebooks.py`` on the
smoke-mode copies it executes, and from the command line on full-mode copies::

    CAKES_WIDGETS=0 jupyter nbconvert --execute --to notebook --output-dir notebooks/outputs \\
        notebooks/0*.ipynb
    python tests/notebook_scan.py                   # scans notebooks/outputs/*.ipynb
    python tests/notebook_scan.py path/to/a.ipynb   # or the given files

It prints one line per finding and exits with 1 when there is any, 2 when there is nothing to
scan.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_GLOB = "notebooks/outputs/*.ipynb"
#: text mime types whose content is scanned (images, plotly JSON and widget views are not text)
TEXT_MIMES = ("text/plain", "text/markdown", "text/html")

_TRACEBACK = re.compile(r"Traceback \(most recent call last\)")
_RAISED = re.compile(r"^\s*(?:[\w.]+\.)?[A-Z]\w*(?:Error|Exception):", re.MULTILINE)
_WARNING = re.compile(r"\b[A-Z]\w*Warning\b:?")
_WIDGET = re.compile(r"Error displaying widget")


@dataclass(frozen=True)
class Finding:
    """One error-like output: where (code cell index among all cells) and what (first line)."""

    cell: int
    kind: str
    text: str

    def __str__(self) -> str:
        return f"cell {self.cell}: {self.kind}: {self.text}"


def _texts(output) -> list[tuple[str, str]]:
    """(channel, text) pairs of one output: the stream name, or the mime type of text data."""
    if output.get("output_type") == "stream":
        text = output.get("text", "")
        return [(output.get("name", "stdout"), "".join(text) if isinstance(text, list) else text)]
    data = output.get("data", {})
    return [(mime, "".join(v) if isinstance(v, list) else str(v))
            for mime, v in data.items() if mime in TEXT_MIMES]


def _first_line(text: str, match: re.Match) -> str:
    start = text.rfind("\n", 0, match.start()) + 1
    end = text.find("\n", match.end())
    return text[start:end if end >= 0 else None].strip()[:200]


def scan(nb: nbformat.NotebookNode) -> list[Finding]:
    """Every error-like output of an executed notebook (see the module docstring)."""
    found = []
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        tags = set(cell.get("metadata", {}).get("tags", []))
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                if "raises-exception" not in tags:
                    found.append(Finding(index, "error", f"{output.get('ename')}: "
                                                         f"{output.get('evalue', '')}"[:200]))
                continue
            for channel, text in _texts(output):
                for kind, pattern in (("traceback", _TRACEBACK), ("exception", _RAISED),
                                      ("widget error", _WIDGET)):
                    match = pattern.search(text)
                    if match:  # one finding per output: a traceback ends in "…Error:" too
                        found.append(Finding(index, f"{kind} in {channel}",
                                             _first_line(text, match)))
                        break
                match = _WARNING.search(text) if channel == "stderr" else None
                if match and "allow-warnings" not in tags:
                    found.append(Finding(index, "warning in stderr", _first_line(text, match)))
    return found


def scan_file(path: str | Path) -> list[Finding]:
    """:func:`scan` of the notebook file at ``path``."""
    return scan(nbformat.read(str(path), as_version=4))


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    paths = [Path(a) for a in args] or sorted(ROOT.glob(DEFAULT_GLOB))
    if not paths:
        print(f"notebook_scan: nothing to scan (no {DEFAULT_GLOB}; pass executed notebooks)",
              file=sys.stderr)
        return 2
    bad = 0
    for path in paths:
        findings = scan_file(path)
        bad += len(findings)
        status = "ok" if not findings else f"{len(findings)} error-like output(s)"
        print(f"{path}: {status}")
        for f in findings:
            print(f"  {f}")
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
