"""The wire format between actors: msgpack, plain types only (a Pte travels as a list).

Step messages and their replies are packed here, and so are the scenario and configuration an actor set is
configured with, so that nothing pickled travels in the data path (Ray pickles the ``bytes`` object itself,
which costs nothing). Unpacking never executes code.
"""

from __future__ import annotations

from dataclasses import fields

from typing import Any, Final

import msgpack

from kernel_model.config import Config
from kernel_model.program import Expect, Op, Scenario, Setup, Thread

# Reply status codes from the page-table actor.
OK: Final = 0  # applied now: [OK, result, lamport, gseq]
QUEUED: Final = 1  # a blocking step waits in the FIFO; its grant comes later as a message to the CPU
BUSY: Final = 2  # "try" mode (arch=up): the step cannot run now; nothing was applied
STALE: Final = 3  # s390: the TLB entry's translation was invalidated since it was filled: [STALE, lamport, gseq]
ERROR: Final = 9  # the step raised (LockMisuse...): [ERROR, text]

_packer = msgpack.Packer(use_bin_type=True)


def pack(value: Any) -> bytes:
    return _packer.pack(value)


def unpack(data: bytes) -> Any:
    return msgpack.unpackb(data, raw=False, strict_map_key=False, use_list=True)


def wire(value: Any) -> Any:
    """Step arguments and results as plain msgpack types: tuples and NamedTuples (Pte) become lists."""
    if isinstance(value, (list, tuple)):
        return [wire(v) for v in value]
    return value


def args_from_wire(args: list) -> tuple:
    """Arguments back as the tuples the kernel paths pass (set_pte_at and pte_same take a Pte-like tuple)."""
    return tuple(tuple(a) if isinstance(a, list) else a for a in args)


# --- scenarios and configuration (sent once per actor set) -----------------------------------------------------
def _op_to_wire(op: Op) -> list:
    return [op.kind, list(op.pages), op.repeat, [_op_to_wire(b) for b in op.body], op.refault, op.max, op.target,
            op.to]


def _op_from_wire(data: list) -> Op:
    kind, pages, repeat, body, refault, limit, target, to = data
    return Op(kind, tuple(pages), repeat, tuple(_op_from_wire(b) for b in body), refault, limit, target=target, to=to)


def scenario_to_wire(s: Scenario) -> dict[str, Any]:
    st = s.setup
    return {
        "name": s.name, "description": s.description,
        # Every Setup field by name, so that a new field can never be dropped on the way to an actor.
        "setup": {f.name: (list(v) if isinstance(v := getattr(st, f.name), tuple) else v) for f in fields(st)},
        "threads": [[t.name, [_op_to_wire(o) for o in t.ops]] for t in s.threads],
        "config": dict(s.config), "params": dict(s.params), "source": s.source,
        "expect": [[e.kind, e.thread, e.page] for e in s.expect],
    }


def scenario_from_wire(d: dict[str, Any]) -> Scenario:
    setup = dict(d["setup"])
    setup["warm_tlb"] = tuple(setup.get("warm_tlb", ()))
    return Scenario(
        name=d["name"], description=d["description"],
        setup=Setup(**setup),
        threads=tuple(Thread(name, tuple(_op_from_wire(o) for o in ops)) for name, ops in d["threads"]),
        config=dict(d["config"]), params=dict(d["params"]), source=d["source"],
        expect=tuple(Expect(*e) for e in d.get("expect", ())))


def pack_spec(scenario: Scenario, cfg: Config) -> bytes:
    return pack({"scenario": scenario_to_wire(scenario), "config": cfg.to_dict()})


def unpack_spec(data: bytes) -> tuple[Scenario, Config]:
    d = unpack(data)
    return scenario_from_wire(d["scenario"]), Config.from_dict(d["config"])
