"""matplotlib.pyplot for the pictures tlbrace writes (timeline, scale plots, history matrix): the Agg backend, files
only, never a display; imported without matplotlib's own warnings on stderr.

With $HOME unwritable or gone (a service account, HOME=/nonexistent, a read-only home in a container) matplotlib
cannot make its config and cache directory, makes a temporary one instead, and said so in two long lines of
warnings under `tlbrace report`'s one line, every run. The pictures are the same either way."""

from __future__ import annotations

import logging
from types import ModuleType


def pyplot() -> ModuleType:
    """``matplotlib.pyplot``, on Agg; matplotlib's log says only errors while it loads (its config directory)."""
    log = logging.getLogger("matplotlib")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import matplotlib.font_manager  # noqa: F401 - reads (or makes) the font cache in the same directory
    finally:
        log.setLevel(level)
    return plt
