"""A test of a compiled module that is not built: a skip on a developer's machine without a compiler, a failure
where TLBRACE_REQUIRE_COMPILED=1 (what CI sets: .ci/run's setup builds every module, so a skip there would hide a
broken build)."""

from __future__ import annotations

import os

import pytest


def skip_unless_built(built: bool, what: str) -> None:
    if built:
        return
    if os.environ.get("TLBRACE_REQUIRE_COMPILED") == "1":
        pytest.fail(f"TLBRACE_REQUIRE_COMPILED=1 but {what} is not built (bash scripts/setup.sh builds it)")
    pytest.skip(f"{what} is not built (no Cython or C compiler)")
