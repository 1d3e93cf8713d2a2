"""Docs point at real things and show real numbers.

Every repo path a docstring, comment, notebook or doc names exists, and nothing cites the team's
private design notes (users don't have them). In the pages a reader opens first (README.md,
docs/*.md, app/README.md): every relative link and its #anchor resolves, every repo file or folder
named in backticks exists, every ``cakes_lite.x.y`` / ``cl.name`` imports; the README stays an
entry point (≲ 150 lines) whose library example runs; the measured tables equal what
benchmarks/docs_tables.py makes from the committed result files.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import cakes_lite as cl


ROOT = Path(__file__).resolve().parents[1]
SCANNED = ["cakes_lite", "app", "benchmarks", "notebooks", "docs", "scripts", "README.md"]
SUFFIXES = {".py", ".ipynb", ".md", ".sh", ".txt", ".toml", ".cfg"}
# A repo-relative path with a file extension, e.g. ``notebooks/02_search.ipynb``; not part of a
# longer path or URL (no word character, "/" or "." right before it). Patterns such as
# ``search_cost*.json`` or ``compare[_quick].json`` stop before the wildcard and are not checked.
REFERENCE = re.compile(
    r"(?<![\w/.])((?:cakes_lite|app|benchmarks|notebooks|docs|scripts|tests)/[\w./-]*?"
    r"\.(?:py|ipynb|md|json|sh|png|txt))(?![\w*\[])"
)
PRIVATE = "DESIGN" + ".md"  # the team's notes; not in the repo

#: the pages a reader opens first
PAGES = ["README.md", *sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "docs").glob("*.md")),
         "app/README.md"]
README_MAX_LINES = 150
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")  # [text](target), ![alt](target)
HEADING = re.compile(r"^#{1,6} +(.+?) *$", re.M)
CODE_SPAN = re.compile(r"`([^`\n]+)`")
REPO_WORD = re.compile(r"^(?:cakes_lite|app|benchmarks|notebooks|docs|scripts|tests|binder|\.ci)/"
                       r"[\w./*-]*$")
#: folders the docs name that are made at run time (git-ignored), not committed
MADE_AT_RUN_TIME = {"notebooks/outputs"}
# a dotted name in the library: ``cakes_lite.data.planted``, ``cl.export.export_onnx``
DOTTED = re.compile(r"(?<![\w.])(cakes_lite|cl)((?:\.[A-Za-z_]\w*)+)")


def scanned_files() -> list[str]:
    files = []
    for entry in SCANNED:
        path = ROOT / entry
        candidates = [path] if path.is_file() else sorted(path.rglob("*"))
        for f in candidates:
            if (f.is_file() and f.suffix in SUFFIXES and ".ipynb_checkpoints" not in f.parts
                    and "__pycache__" not in f.parts and "outputs" not in f.parts):
                files.append(f.relative_to(ROOT).as_posix())
    return files


def problems(rel: str) -> list[str]:
    text = (ROOT / rel).read_text(encoding="utf-8")
    out = [f"{rel} names {ref}, which does not exist"
           for ref in sorted(set(REFERENCE.findall(text))) if not (ROOT / ref).exists()]
    if PRIVATE in text:
        out.append(f"{rel} cites {PRIVATE}, which is not in the repo")
    return out


def test_reference_pattern():
    found = REFERENCE.findall(
        "see ``notebooks/02_search.ipynb``, cakes_lite/ops.py. and docs/app.png; not "
        "https://x.org/tree/notebooks/01_operations.ipynb nor benchmarks/results/a*.json "
        "nor benchmarks/results/compare[_quick].json nor notebooks/outputs")
    assert found == ["notebooks/02_search.ipynb", "cakes_lite/ops.py", "docs/app.png"]


def test_scan_covers_the_repo():
    files = scanned_files()
    assert {"README.md", "docs/ARCHITECTURE.md", "cakes_lite/ops.py",
            "notebooks/01_operations.ipynb", "app/app.py"} <= set(files)
    assert problems("README.md") == []  # readable and clean


def test_every_named_file_exists_and_nothing_cites_private_notes():
    found = [p for rel in scanned_files() for p in problems(rel)]
    assert found == []


def test_top_level_all_is_the_public_api():
    import types

    for name in cl.__all__:  # every exported name exists (names are imported on first use)
        getattr(cl, name)
    public = {n for n, v in vars(cl).items()
              if not n.startswith("_") and not isinstance(v, types.ModuleType)
              and n not in ("annotations", "importlib", "Any")}
    assert len(cl.__all__) == len(set(cl.__all__))
    assert set(cl.__all__) == public  # … and every public name is listed
    for name in cl.__all__:  # and the package docstring names it
        assert f"`{name}`" in cl.__doc__, name


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]|\[([^\]]*)\]\([^)]*\)", r"\1", heading).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def link_problems(rel: str) -> list[str]:
    """Relative links of ``rel`` whose file, or #anchor in a markdown file, does not exist."""
    text = (ROOT / rel).read_text(encoding="utf-8")
    out = []
    for target in LINK.findall(text):
        if re.match(r"[a-z]+:", target):  # https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        file = (ROOT / rel).parent / path if path else ROOT / rel
        if not file.exists():
            out.append(f"{rel} links to {target}: no such file")
        elif anchor and file.suffix == ".md":
            slugs = {_slug(h) for h in HEADING.findall(file.read_text(encoding="utf-8"))}
            if anchor not in slugs:
                out.append(f"{rel} links to {target}: no heading with that anchor")
    return out


def path_problems(rel: str) -> list[str]:
    """Repo files and folders named in backticks (also inside a command) that do not exist."""
    out = []
    for span in CODE_SPAN.findall((ROOT / rel).read_text(encoding="utf-8")):
        for word in span.split():
            word = word.rstrip(",;:)")
            if not REPO_WORD.match(word) or word.rstrip("/") in MADE_AT_RUN_TIME:
                continue
            found = list(ROOT.glob(word)) if "*" in word else [ROOT / word]
            if not found or not all(f.exists() for f in found):
                out.append(f"{rel} names {word}, which does not exist")
    return out


def resolve(dotted: str) -> object:
    """The object ``cakes_lite.a.b.c`` names: the longest importable module, then attributes."""
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ModuleNotFoundError:
            continue
        for attr in parts[i:]:
            obj = getattr(obj, attr)
        return obj
    raise ModuleNotFoundError(dotted)


def name_problems(rel: str) -> list[str]:
    """``cakes_lite.x.y`` and ``cl.name`` of ``rel`` that do not import or resolve."""
    out = []
    for root, rest in sorted(set(DOTTED.findall((ROOT / rel).read_text(encoding="utf-8")))):
        name = "cakes_lite" + rest
        try:
            resolve(name)
        except (ImportError, AttributeError) as e:
            out.append(f"{rel} names {root}{rest}, which does not resolve ({e})")
    return out


def test_checkers_catch_what_they_claim(tmp_path, monkeypatch):
    page = tmp_path / "docs" / "page.md"
    page.parent.mkdir()
    (tmp_path / "docs" / "other.md").write_text("# Other\n\n## How it's done\n")
    (tmp_path / "app").mkdir()
    page.write_text(
        "# Page\n[ok](other.md#how-its-done) [bad anchor](other.md#nope) [gone](missing.md) "
        "[web](https://example.org/x.md) [self](#page)\n"
        "`app/` and `python app/nowhere.py --help`, `notebooks/outputs`, `app/*.py`\n"
        "`cakes_lite.layout.Layout`, `cl.shrink`, `cl.export.export_onnx`, `cakes_lite.nope`, "
        "`cl.no_such_name`; not a name: incl.shrink\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    assert link_problems("docs/page.md") == [
        "docs/page.md links to other.md#nope: no heading with that anchor",
        "docs/page.md links to missing.md: no such file"]
    assert path_problems("docs/page.md") == [
        "docs/page.md names app/nowhere.py, which does not exist",
        "docs/page.md names app/*.py, which does not exist"]
    assert [p.split(",")[0] for p in name_problems("docs/page.md")] == [
        "docs/page.md names cakes_lite.nope", "docs/page.md names cl.no_such_name"]
    assert _slug("Accuracy vs cost: the paper's claim in small") == (
        "accuracy-vs-cost-the-papers-claim-in-small")


@pytest.mark.parametrize("rel", PAGES)
def test_links_paths_and_names_in_pages_exist(rel):
    assert link_problems(rel) + path_problems(rel) + name_problems(rel) == []


def test_readme_is_an_entry_point():
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines"
    assert {"make demo", "make test"} <= {line.split("#")[0].strip() for line in lines[:20]}
    assert "OWNER" not in "\n".join(lines)  # no placeholder where a link should be


def _docs_tables():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        return importlib.import_module("docs_tables")
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))


def test_generated_tables_equal_the_result_files():
    tables = _docs_tables()
    used = []
    for rel in tables.DOCUMENTS:
        text = (ROOT / rel).read_text(encoding="utf-8")
        used += tables.blocks(text)
        assert tables.render(text, rel) == text, (
            f"{rel}: a table differs from its result files; run python benchmarks/docs_tables.py")
    assert sorted(used) == sorted(tables.TABLES)  # every table is shown, and shown once


def test_generator_rewrites_a_stale_table_and_refuses_unknown_names():
    tables = _docs_tables()
    stale = ("a\n<!-- generated by benchmarks/docs_tables.py: search-cost -->\n| 9.99× |\n"
             "<!-- end generated -->\nb\n")
    fresh = tables.render(stale)
    assert "9.99" not in fresh and "| CAKES^P search step |" in fresh
    assert fresh.startswith("a\n<!-- generated") and fresh.endswith("<!-- end generated -->\nb\n")
    with pytest.raises(ValueError, match="expected a table name among .*got 'no-such'"):
        tables.render(stale.replace("search-cost", "no-such"), "x.md")
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "docs_tables.py"), "--check"],
                          capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr


def test_readme_library_example_runs(tmp_path, monkeypatch, one_thread):
    """The README's one-screen example, run as written (seeded): it shows the CPU-fast path,
    its first printed profile is exact and the second within the range its comment gives.
    One thread: ``for_inference(example=x)`` times plans, which two threads on busy shared
    cores make slow (40 s instead of 4 on this machine at load 6)."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    code = re.search(r"## The library in one screen\n+```python\n(.*?)```", text, re.S).group(1)
    assert "round_to=16" in code and re.search(r"cl\.for_inference\(.*example=", code)
    monkeypatch.chdir(tmp_path)  # it writes layout.json
    out, scope = io.StringIO(), {}
    with contextlib.redirect_stdout(out):
        exec(compile(code, "README.md", "exec"), scope)  # noqa: S102 - our own README
    printed = out.getvalue().splitlines()
    comments = re.findall(r"print\(.*\)\s+# (.*)", code)
    assert len(printed) == len(comments) == 2
    assert printed[0].startswith(comments[0])  # "46.89 M MACs, 0.226 M params"
    macs = float(re.search(r"≈ ([\d.]+) M MACs", comments[1]).group(1))
    assert abs(cl.profile(scope["small"], (1, 3, 8, 32, 32)).macs / 1e6 - macs) <= 0.1 * macs
    assert (tmp_path / "layout.json").is_file()
    x = torch.randn(1, 3, 8, 32, 32)
    shrunk = cl.shrink(scope["model"], scope["fast_layout"]).eval()
    with torch.no_grad():
        torch.testing.assert_close(scope["fast"](x), shrunk(x), atol=1e-4, rtol=1e-4)
