"""The README's code runs as written: every Python block executes, every `iristrack` command line parses."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys

import click
import pytest

from tests.paths import REPO

README = (REPO / "README.md").read_text()
PYTHON_BLOCKS = re.findall(r"```python\n(.*?)```", README, flags=re.S)
BASH_BLOCKS = re.findall(r"```bash\n(.*?)```", README, flags=re.S)


def _command_lines() -> list[str]:
    """`iristrack ...` lines of the bash blocks, comments and line continuations resolved."""
    lines = []
    for block in BASH_BLOCKS:
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" #", 1)[0].strip()
            if line.startswith("iristrack "):
                lines.append(line)
    return lines


@pytest.fixture(scope="module")
def eye_clip(tmp_path_factory):
    """The `eye.mp4` the examples read: a short synthetic clip (the README's examples name it so)."""
    from tools.synthetic import write_clip

    folder = tmp_path_factory.mktemp("readme")
    write_clip(folder / "eye.mp4", folder / "eye_truth.csv", 30, (320, 240), 30.0, 3)
    return folder


def test_the_readme_has_python_examples_and_commands():
    assert len(PYTHON_BLOCKS) >= 2 and len(_command_lines()) >= 10


@pytest.mark.parametrize("index", range(len(PYTHON_BLOCKS)))
def test_each_python_block_runs_as_written(eye_clip, index):
    proc = subprocess.run(
        [sys.executable, "-c", PYTHON_BLOCKS[index]], cwd=eye_clip, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, f"README python block {index} failed:\n{PYTHON_BLOCKS[index]}\n{proc.stderr}"


@pytest.mark.parametrize("line", _command_lines())
def test_each_iristrack_command_line_parses(line):
    # Parsing checks the command and every option and value; paths of the author's machine need not exist.
    from cli import main

    args = shlex.split(line)[1:]
    try:
        with main.make_context("iristrack", args, resilient_parsing=False) as ctx:
            name, command, rest = main.resolve_command(ctx, ctx.protected_args + ctx.args)
            command.make_context(name, rest, parent=ctx)
    except click.BadParameter as exc:
        if "does not exist" not in exc.format_message():
            raise
