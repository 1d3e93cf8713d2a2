"""The error-like-output scanner (tests/notebook_scan.py) on hand-made executed notebooks."""

from __future__ import annotations

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from notebook_scan import main, scan

TQDM_LINE = "networks: 100%|██████████| 4/4 [00:49<00:00, 12.32s/it]\n"


def _nb(*outputs, tags=()) -> nbformat.NotebookNode:
    cell = new_code_cell("x = 1", outputs=list(outputs), metadata={"tags": list(tags)})
    return new_notebook(cells=[new_markdown_cell("# t"), cell])


def _stream(text, name="stderr"):
    return new_output("stream", name=name, text=text)


def _data(mime, text):
    return new_output("display_data", data={mime: text})


@pytest.mark.parametrize("output, kind", [
    (new_output("error", ename="ValueError", evalue="budget", traceback=[]), "error"),
    (_stream("Traceback (most recent call last):\n  File ...\nKeyError: 'x'\n"), "traceback"),
    (_stream("caught: ok\nValueError: split: expected 64 channels\n", "stdout"), "exception"),
    (_data("text/plain", "torch.OutOfMemoryError: CUDA out of memory"), "exception"),
    (_stream("/x/search.py:80: UserWarning: the layout is 3 % over budget\n"), "warning"),
    (_data("text/plain", "Error displaying widget: model not found"), "widget error"),
])
def test_each_kind_of_broken_output_is_found(output, kind) -> None:
    (finding,) = scan(_nb(output))
    assert finding.cell == 1 and finding.kind.startswith(kind), finding


@pytest.mark.parametrize("outputs, tags", [
    ([_stream(TQDM_LINE), _stream("max error 1.2e-07, error bars = std\n", "stdout")], ()),
    ([_data("text/markdown", "- **ValueErrors** are raised for bad input")], ()),
    ([_stream("UserWarning: shown on purpose\n")], ("allow-warnings",)),
    ([new_output("error", ename="ValueError", evalue="on purpose", traceback=[])],
     ("raises-exception",)),
    ([_stream("a DeprecationWarning in stdout is printed text, not a warning\n", "stdout")], ()),
])
def test_ordinary_outputs_and_tagged_cells_pass(outputs, tags) -> None:
    assert scan(_nb(*outputs, tags=tags)) == []


def test_command_line_exit_codes(tmp_path, capsys) -> None:
    good, bad = tmp_path / "good.ipynb", tmp_path / "bad.ipynb"
    nbformat.write(_nb(_stream(TQDM_LINE)), good)
    nbformat.write(_nb(_stream("Traceback (most recent call last):\n")), bad)
    assert main([str(good)]) == 0
    assert main([str(good), str(bad)]) == 1
    assert "bad.ipynb: 1 error-like output(s)" in capsys.readouterr().out
