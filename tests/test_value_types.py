"""The model's immutable values (kernel_model.state: Pte, TlbEntry, Ipi, Folio) replace fields with a compiled
``_replace``; it must do exactly what collections' NamedTuple ``_replace`` does."""

from __future__ import annotations

import random
from collections import namedtuple

import pytest

from kernel_model.state import Folio, Ipi, Pte, TlbEntry


@pytest.mark.parametrize("value_type", [Pte, TlbEntry, Ipi, Folio])
def test_replace_is_namedtuples(value_type: type) -> None:
    reference = namedtuple("reference", value_type._fields)  # collections' own _replace
    rng = random.Random(20)
    for _ in range(200):
        value = value_type(*[rng.randrange(4) for _ in value_type._fields])
        names = rng.sample(value_type._fields, rng.randrange(len(value_type._fields) + 1))
        changes = {name: rng.randrange(4) for name in names}
        got = value._replace(**changes)
        assert type(got) is value_type
        assert tuple(got) == tuple(reference(*value)._replace(**changes))
        assert tuple(value) == tuple(reference(*value))  # the original is untouched


def test_replace_refuses_an_unknown_field() -> None:
    with pytest.raises(ValueError, match="unexpected field names: \\['bogus'\\]"):
        Folio(0, False, 0)._replace(bogus=1)
