"""The compiled encode of exact visited keys (controlled/_compact_keys.pyx) writes the Python encode's bytes.

Both number a key's parts in their field's table in order of first appearance and write the numbers in the
prefix code (controlled.visited); the compiled one is only faster. These run both side by side, over every key a
real search stores and over keys built to reach the prefix code's escapes and a key longer than the compiled
encode's stack buffer, and compare bytes and tables.
"""

from __future__ import annotations

import pytest

from controlled.depth_first import depth_first, dfs_holding, root_entry
from controlled.explorer import ExploreResult
from controlled.machine import Machine
from controlled.visited import CompactKeys, HashKeys, adder, compiled_encoder, encoder, numbers
from kernel_model.config import Config
from scenarios.loader import load_scenario
from tests.compiled_required import skip_unless_built

needs_compiled = pytest.mark.skipif(compiled_encoder() is None,
                                    reason="controlled._compact_keys is not built (bash scripts/setup.sh builds it)")


def test_the_compiled_encoder_is_built():
    """scripts/setup.sh builds controlled/_compact_keys.pyx; without a compiler the Python encode runs (and this
    test says so rather than passing quietly)."""
    skip_unless_built(compiled_encoder() is not None, "controlled._compact_keys (the Python encode runs)")
    assert CompactKeys().compiled and not CompactKeys(compiled=False).compiled


class BothEncodings:
    """Keys for dfs_holding that encode each canonical key both ways and fail on the first difference."""

    def __init__(self) -> None:
        self.compiled, self.python = CompactKeys(), CompactKeys(compiled=False)
        self.encoded = 0

    def encode(self, key: tuple) -> bytes:
        fast, slow = self.compiled.encode(key), self.python.encode(key)
        assert fast == slow, f"key {self.encoded}: compiled {numbers(fast)} != Python {numbers(slow)}"
        self.encoded += 1
        return fast

    def bytes_used(self, stored) -> int:
        return self.compiled.bytes_used(stored)


# Two searches (session 17; before, one ladder of two pages and two writers: 411,382 states, 34 s of CPU, the
# suite's longest test): two pages and one writer, whose folios take 392 values, so most keys carry an escaped
# number (13,657 states); one page and two interchangeable writers, whose keys are symmetry's representatives
# (18,418 states). Each field's table is filled by every key of a whole search in both.
@needs_compiled
@pytest.mark.parametrize("params, escaped", [({"pages": 2, "writers": 1, "stores": 1, "passes": 1}, True),
                                             ({"pages": 1, "writers": 2, "stores": 1, "passes": 1}, False)],
                         ids=["two-pages", "two-writers"])
def test_both_encodings_write_the_same_bytes_for_every_key_of_a_search(params, escaped):
    scenario = load_scenario("ladder", params)
    keys = BothEncodings()
    result, _ = dfs_holding(Machine(scenario, Config(ordering="delayed"), reduce=True), keys)
    assert result.complete and result.states > 10_000  # the search ran to its end (dfs_holding searches it all)
    assert keys.encoded > result.states
    assert keys.compiled._tables == keys.python._tables
    assert (max(map(len, keys.compiled._tables)) > 255) == escaped  # where expected, the escape was exercised


@needs_compiled
def test_both_encodings_agree_on_escapes_and_long_keys():
    fast, slow = CompactKeys(), CompactKeys(compiled=False)
    # 70,000 values of one field: one-byte, three-byte and seven-byte numbers; then a key of 200 parts (more than
    # the compiled encode's stack buffer holds).
    for n in range(70_000):
        key = ((n, n % 3), (("p", n % 300),), ())
        assert fast.encode(key) == slow.encode(key), n
    assert fast._tables == slow._tables
    fast, slow = CompactKeys(), CompactKeys(compiled=False)
    long_key = (tuple(range(200)), tuple(range(50)), (None,))
    assert fast.encode(long_key) == slow.encode(long_key)
    assert numbers(fast.encode(long_key)) == [200, 50, 1] + [0] * 251
    assert fast._tables == slow._tables


class PermutedBoth:
    """A search's canonical form, computed by encoder() with a compiled encoding (the representative's
    permutation applied by encode_permuted) and by the Python reference on the representative (``slow``): fails
    on the first difference in what they give, or in the permutation Symmetry.last reports (sleep sets rename by
    it)."""

    def __init__(self, m: Machine, fast, slow) -> None:
        self.m, self.fast, self.slow = m, fast, slow
        self.fused = encoder(m.canonical, fast)
        self.encoded = self.swapped = 0

    def __call__(self, key: tuple) -> object:
        fast = self.fused(key)
        applied = self.m.symmetry.last
        slow = self.slow(self.m.canonical(key))
        assert self.m.symmetry.last is applied
        assert fast == slow, f"key {self.encoded}: fused {fast!r} != Python {slow!r}"
        self.encoded += 1
        self.swapped += applied is not None
        return fast


@needs_compiled
@pytest.mark.parametrize("arch", ["smp", "up"])
@pytest.mark.parametrize("hashed", [False, True], ids=["exact", "hashed"])
def test_the_permuted_encoding_gives_the_representatives_encoding(arch, hashed):
    """encoder() hands the compiled encoder (exact keys) or hasher (hash compaction) the representative's
    permutation (a Plan per permutation) instead of the permuted key: every key of a whole two-writer search
    (threads and, on smp, CPUs swapped) gets what the Python encode of the representative gives (bytes, and the
    same tables grown; or hash(key))."""
    scenario = load_scenario("ladder", {"pages": 1, "writers": 2, "stores": 1, "passes": 1})
    m = Machine(scenario, Config(ordering="delayed", arch=arch), reduce=True)
    python = CompactKeys(compiled=False)
    canon = PermutedBoth(m, HashKeys() if hashed else CompactKeys(), hash if hashed else python.encode)
    seen = {canon(m.key())}
    result = ExploreResult("dfs", False, 0, 0, 0, 0.0)
    assert depth_first(m, canon, adder(seen), [root_entry(m)], [], result, False, lambda: True)
    # 2,604 keys on UP since retries are keyed as first attempts (controlled.generator_state): still thousands
    assert len(seen) > 2_000 and canon.encoded > len(seen)
    assert canon.encoded > canon.swapped > canon.encoded // 4  # both the identity and the swap were written
    if not hashed:
        assert canon.fast._tables == python._tables


@needs_compiled
def test_the_hasher_gives_hash_of_the_key():
    """Hasher.hash is CPython's hash of a tuple of tuples, from its items' hashes: the same for any items (strings,
    -1, whose hash is -2, empty parts), whether the items were met before or not."""
    hasher = HashKeys()
    assert hasher.compiled
    parts = [(), (-1,), ("a", None, 2.5), ((1, 2), frozenset({3})), tuple(range(300))]
    for a in parts:
        for b in parts:
            key = (a, b, (a, b))
            assert hasher.encode(key) == hash(key)
            assert hasher.encode((b,)) == hash((b,))
    assert hasher.encode(()) == hash(())
