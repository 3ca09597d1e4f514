"""The README's quick start runs as written, and the README has no unfilled figure."""

import os
import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()


def section(title: str) -> str:
    start = README.index(f"## {title}\n")
    end = README.find("\n## ", start + 1)
    return README[start : end if end > 0 else None]


def blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", text, flags=re.S)


@pytest.mark.slow
def test_quick_start_runs_as_written(tmp_path):
    """Every command and Python block of the quick start, in order, in a folder with the repository's
    examples/ and hubconf.py (as in a checkout)."""
    (tmp_path / "examples").symlink_to(REPO / "examples")
    (tmp_path / "hubconf.py").symlink_to(REPO / "hubconf.py")
    quick = section("Quick start")
    commands = [ln for b in blocks(quick, "bash") for ln in b.splitlines() if ln.strip()]
    assert commands and all(c.startswith("deeplab ") for c in commands)
    for command in commands:
        run = subprocess.run(command, shell=True, cwd=tmp_path, capture_output=True, text=True, timeout=600)
        assert run.returncode == 0, f"{command}\n{run.stderr[-2000:]}"
    assert len(list((tmp_path / "out").glob("*_probs.npz"))) == 4 and (tmp_path / "refined.png").is_file()
    code = "\n".join(blocks(quick, "python"))
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        exec(compile(code, "README quick start", "exec"), {})
    finally:
        os.chdir(cwd)


def test_readme_has_no_unfilled_figures():
    assert "[[FIG" not in README
