"""The reducer's persistent-set memo keys (controlled.reducer._packed): equal bytes exactly when the numbers are equal.
Its compiled twin (controlled/_reducer_keys.pyx) gives the same bytes.

A key's numbers are written in one width (1, 2 or 4 bytes), the narrowest that holds the largest, and marked by a
last number in that width; lists that differ in length or width must never give the same bytes (a memo hit would
then answer another state's question).
"""

from __future__ import annotations

import random

import pytest

from controlled.reducer import _compiled_packed, _packed
from tests.compiled_required import skip_unless_built

COMPILED = _compiled_packed()


def test_packed_keys_are_equal_exactly_when_their_numbers_are():
    rng = random.Random(17)
    tops = (0x10, 0x100, 0x101, 0x10000, 0x10001, 2 ** 32 - 1)
    keys = {(1, 0), (1,), (1, 0, 0, 0), (2, 0), (2,), (4,), (0x102,), (2, 1), (0x10000,), (0, 1, 0)}
    for _ in range(5_000):
        top = rng.choice(tops)
        keys.add(tuple(rng.randrange(top) for _ in range(rng.randint(1, 8))))
    packed: dict[bytes, tuple] = {}
    for key in keys:
        code = _packed(list(key))
        assert packed.setdefault(code, key) == key, (key, packed[code])
    assert len(packed) == len(keys)


def _random_keys() -> list[list[int]]:
    rng = random.Random(29)
    tops = (1, 0x100, 0x101, 0x10000, 0x10001, 2 ** 32)
    return [[rng.randrange(top) for _ in range(rng.randint(1, 12))] for _ in range(3_000) for top in [rng.choice(tops)]]


def test_the_compiled_packer_is_built():
    """scripts/setup.sh builds controlled/_reducer_keys.pyx; without a compiler the Python _packed runs."""
    skip_unless_built(COMPILED is not None, "controlled._reducer_keys (the Python _packed runs)")


@pytest.mark.skipif(COMPILED is None, reason="controlled._reducer_keys is not built (bash scripts/setup.sh builds it)")
def test_the_compiled_packer_gives_the_python_bytes():
    for numbers in _random_keys() + [[0], [0xFF], [0x100], [0xFFFF], [0x10000], [2 ** 32 - 1]]:
        mine, theirs = list(numbers), list(numbers)
        assert COMPILED(mine) == _packed(theirs), numbers
        assert mine == theirs  # both append the width: the reducer keeps the list (Reducer._key)
    for bad in ([2 ** 32],):
        with pytest.raises(OverflowError):
            COMPILED(list(bad))
        with pytest.raises(OverflowError):
            _packed(list(bad))
