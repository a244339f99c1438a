"""When a stress campaign stops: after N trials, after a time budget, or after N violating trials.

Stress users work by time ("run it overnight": stress-ng ``--timeout``, Jepsen's ``--time-limit``) or until the
first failure (syzkaller), not only by a trial count. The three limits combine: the campaign stops at whichever
is reached first. A limit that is not given does not bound the campaign: with only ``--duration``, the number of
trials is unbounded.

What each limit counts on ``--resume``:
- ``trials``: trials of the whole campaign (those recorded by earlier drivers included), as before;
- ``until``: violating trials of the whole campaign, likewise (a campaign that already holds N stops at once);
- ``duration``: this driver's running time only. A resumed time-boxed campaign gets a fresh budget: "run it for
  another 8 hours" is what a resume after a crash or a Ctrl-C means, and the time an earlier driver spent is not
  recorded anywhere trustworthy (it may have been SIGKILLed).

When a limit other than ``trials`` is reached, the trials still running are abandoned, as on Ctrl-C: they are
not recorded, so a resume runs them again with the same seeds.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Protocol

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd]?)$", re.ASCII)  # ASCII: \d took '٣' (float() reads it)
_UNIT_S = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
# A year: longer is no time box (a duration of 400 nines of seconds was float infinity, printed "infs"); a longer
# hunt is a resumed campaign, each resume with its own --duration.
MAX_DURATION_S = 366 * 86400.0


class DurationError(ValueError):
    """A duration that is not NUMBER[s|m|h|d]; the message says what was expected."""


def parse_duration(text: str) -> float:
    """``30s``, ``10m``, ``8h``, ``1d`` or plain seconds (``90``, ``2.5``) -> seconds (> 0)."""
    m = _DURATION.match(text.strip().lower())
    if m is None:
        raise DurationError(f"{text!r}: expected a duration such as 30s, 10m, 8h or 1d")
    seconds = float(m.group(1)) * _UNIT_S[m.group(2)]
    if seconds <= 0:
        raise DurationError(f"{text!r}: expected a duration > 0")
    if seconds > MAX_DURATION_S:
        raise DurationError(f"{text!r}: expected a duration of at most {MAX_DURATION_S / 86400:.0f}d")
    return seconds


class _Progress(Protocol):
    """What a stop rule reads of a campaign so far (actors.campaign.CampaignResult has these)."""

    trials: int

    @property
    def violations(self) -> int: ...


@dataclass(frozen=True, slots=True)
class StopRule:
    trials: int | None = None  # stop when the campaign holds this many finished trials
    duration_s: float | None = None  # stop when this driver has run this long
    until: int | None = None  # stop when the campaign holds this many violating trials

    def bounded(self) -> bool:
        return any(x is not None for x in (self.trials, self.duration_s, self.until))

    def reason(self, so_far: _Progress, started: float, now: float | None = None) -> str | None:
        """Which limit is reached ("until", "trials", "duration"), or None to go on. ``started``/``now``:
        time.monotonic() values. "until" wins a tie: the violation is the news."""
        if self.until is not None and so_far.violations >= self.until:
            return "until"
        if self.trials is not None and so_far.trials >= self.trials:
            return "trials"
        if self.duration_s is not None and (time.monotonic() if now is None else now) - started >= self.duration_s:
            return "duration"
        return None
