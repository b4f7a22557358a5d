"""docs/errors.md, row by row: every call fails with the message the page shows.

The page's first python block defines the names its Python rows use; its second
writes the files its laplace-attn-infer rows use. Each row is one test.
"""
import re
import subprocess
import sys
from pathlib import Path

import pytest

import laplace_attn

PAGE = Path(__file__).resolve().parents[2] / "docs" / "errors.md"
TEXT = PAGE.read_text()
SETUP, FILES = re.findall(r"```python\n(.*?)```", TEXT, re.S)[:2]
PYTHON_ROW = re.compile(r"^\| (?P<case>[^|]+) \| `(?P<call>.+)` \| `(?P<type>\w+)` \| "
                        r"(?P<message>.+) \|$", re.M)
PROGRAM_ROW = re.compile(r"^\| (?P<case>[^|]+) \| `laplace-attn-infer ?(?P<args>[^`]*)` \| "
                         r"(?P<message>.+) \|$", re.M)
PYTHON_CASES = list(PYTHON_ROW.finditer(TEXT))
PROGRAM_CASES = list(PROGRAM_ROW.finditer(TEXT))


def test_the_page_has_the_cases():
    assert len(PYTHON_CASES) >= 40 and len(PROGRAM_CASES) >= 15


@pytest.fixture(scope="module")
def names():
    scope = {}
    exec(SETUP, scope)
    return scope


@pytest.mark.parametrize("row", PYTHON_CASES, ids=lambda r: r["call"])
def test_python_call_fails_with_the_documented_message(row, names):
    with pytest.raises(Exception) as raised:
        eval(row["call"], names)
    assert type(raised.value).__name__ == row["type"]
    assert str(raised.value).splitlines()[0] == row["message"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    path = tmp_path_factory.mktemp("program")
    script = path / "files.py"
    script.write_text(FILES)
    subprocess.run([sys.executable, str(script)], cwd=path, check=True, capture_output=True)
    return path


@pytest.mark.parametrize("row", PROGRAM_CASES, ids=lambda r: r["args"] or "no arguments")
def test_program_fails_with_the_documented_message(row, folder):
    result = subprocess.run([laplace_attn.infer_program(), *row["args"].split()], cwd=folder,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines()[0] == f"laplace-attn-infer: {row['message']}"
