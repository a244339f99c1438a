"""Numbers a user wrote as text (an option, a ``--param``, a header field): ASCII digits only.

Python's ``int()`` and ``float()`` take any Unicode decimal digit: ``int('٣')`` is 3 and ``int('３')`` (a
full-width digit) too, so ``--param passes=١٠`` ran as 10 and ``--budget ５`` as 5. A number no tool of a kernel
engineer would read that way (C's strtol, awk, a shell's arithmetic) is refused where it is read, so the run that
happens is the one the text says to everyone.
"""

from __future__ import annotations


def decimal_int(text: str) -> int:
    """``int(text, 10)`` of ASCII text only (its sign, digits, ``_`` and surrounding blanks as Python reads them);
    ValueError otherwise, saying that a digit is not ASCII when that is why."""
    if not text.isascii():
        raise ValueError(f"{text!r} has a character that is not an ASCII digit")
    return int(text, 10)


def decimal_float(text: str) -> float:
    """``float(text)`` of ASCII text only (ValueError otherwise, as decimal_int)."""
    if not text.isascii():
        raise ValueError(f"{text!r} has a character that is not an ASCII digit")
    return float(text)
