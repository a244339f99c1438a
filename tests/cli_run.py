"""Run ``tlbrace`` in-process as a user would and capture what it said (tests of messages and exit codes)."""

from __future__ import annotations

import pytest

from cli.main import main


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """(exit status, stdout, stderr) of ``tlbrace ARGV``; argparse's own usage exits count as statuses."""
    try:
        rc = main(list(argv))
    except SystemExit as exc:  # argparse usage errors
        rc = int(exc.code)
    out, err = capsys.readouterr()
    return rc, out, err
