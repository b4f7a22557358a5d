"""The documentation's snippets run as written.

In README.md and docs/*.md: every ```python block of a page runs, in order, as one
script; then every ```bash block, in order; both in a fresh folder. A block preceded
by `<!-- not run -->` is skipped (set-up commands, signatures). A block preceded by
`<!-- file: PATH -->` must equal that file of the repository, which other tests build
and run (the C++ consumer project).
"""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"(?:<!-- (?P<marker>not run|file: [^>]+?) -->\n)?"
                   r"```(?P<lang>[\w+-]*)\n(?P<code>.*?)```", re.S)


def blocks(page):
    for match in FENCE.finditer(page.read_text()):
        yield match["lang"], match["code"], match["marker"] or ""


def runnable(page, lang):
    return [code for block_lang, code, marker in blocks(page) if block_lang == lang and not marker]


@pytest.mark.parametrize("page", [p for p in PAGES if runnable(p, "python") or runnable(p, "bash")],
                         ids=lambda p: p.name)
def test_snippets_run(page, tmp_path):
    python, bash = runnable(page, "python"), runnable(page, "bash")
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    if python:
        script = tmp_path / "snippets.py"
        script.write_text("\n".join(python))
        result = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env,
                                capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, f"{page.name}:\n{result.stderr[-3000:]}"
    for code in bash:
        result = subprocess.run(["bash", "-euo", "pipefail", "-c", code], cwd=tmp_path, env=env,
                                capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, f"{page.name}:\n{code}\n{result.stderr[-3000:]}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_quoted_files_are_current(page):
    for _, code, marker in blocks(page):
        if marker.startswith("file: "):
            path = ROOT / marker[len("file: "):]
            assert code == path.read_text(), f"{page.name} quotes {path} out of date"
