"""The installed ``tlbrace`` command, and how a wheel keeps its modules out of everyone else's way.

The project's code lives in top-level packages (``kernel_model``, ``actors``, ``scenarios`` and the others that
setup.py's CODE lists: the repository's layout, docs/architecture.md). Installed as such into site-packages they would collide with any other distribution's
modules of the same names. So a wheel ships them one level down, in ``tlbrace/_lib/`` (setup.py), where no
``import actors`` elsewhere can find them, and the ``tlbrace`` command puts that directory first on its own
``sys.path`` before importing them. It also prepends it to ``PYTHONPATH``, so that the Ray workers of the
embedded cluster (separate processes that import ``actors.cpu`` etc. by name) find the same modules.

In a development install (``pip install -e .``, scripts/setup.sh) there is no ``_lib``: the packages are
imported from the repository, as they always were.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

LIB = Path(__file__).resolve().parent / "_lib"


def use_private_lib() -> bool:
    """Put the wheel's private package directory first on sys.path and PYTHONPATH; False in a dev install."""
    if not LIB.is_dir():
        return False
    lib = str(LIB)
    if lib not in sys.path:
        sys.path.insert(0, lib)
    paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if lib not in paths:
        os.environ["PYTHONPATH"] = os.pathsep.join([lib, *paths])
    return True


def main() -> int:
    use_private_lib()
    from cli.main import calm_shutdown, main as cli_main

    status = cli_main()
    calm_shutdown()  # a Ctrl-C while the interpreter shuts down is no traceback
    return status
