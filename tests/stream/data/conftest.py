from __future__ import annotations

import pytest

from ops.cli import main


@pytest.fixture
def run_cli(capsys):
    """Run `unisar ARGS...` in process; return (exit code, stdout, stderr)."""

    def run(*argv: str) -> tuple[int, str, str]:
        code = main(list(argv))
        out, err = capsys.readouterr()
        return code, out, err

    return run
