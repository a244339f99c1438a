"""The reducer's persistent-set memo keys (controlled.reducer._packed): equal bytes exactly when the numbers are equal.

A key's numbers are written in one width (1, 2 or 4 bytes), the narrowest that holds the largest, and marked by a
last number in that width; lists that differ in length or width must never give the same bytes (a memo hit would
then answer another state's question).
"""

from __future__ import annotations

import random

from controlled.reducer import _packed


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
