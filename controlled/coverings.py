"""What a thread's transition would turn stale: the context of a completion's footprint (controlled.reduction).

A completion (wait_acks, or a step after which the system call may return) marks the thread's covered
translations stale in the oracle (kernel_model.oracle: a store through one is then a violation). Its footprint
therefore names them (Footprints.step_footprint's ``covering``), and the reducer and the sleep sets key their
memos on them.
"""

from __future__ import annotations

from controlled.positions import Resolved
from controlled.reduction import Footprints
from kernel_model.oracle import MAY_END_COVERING_CALL, Oracle
from kernel_model.state import State
from kernel_model.steps import Step

NOTHING: frozenset = frozenset()


def covering(oracle: Oracle, tid: int, step: Step) -> frozenset:
    """What a completion by this step would turn stale: the oracle's covered translations of ``tid`` (in the
    flushed range, for wait_acks); empty for other steps."""
    if not oracle.covered:
        return NOTHING
    if step.op == "wait_acks":
        return oracle.covering(tid, *step.args)
    return oracle.covering(tid) if step.op in MAY_END_COVERING_CALL else NOTHING


def coverings(oracle: Oracle, tid: int, p: Resolved) -> tuple[frozenset, ...]:
    """covering() of each step of thread ``tid``'s next transition at ``p``. A block that waits for the thread to
    cover nothing before it runs the release ending the call (Resolved.uncovered, controlled.lock_joins) also
    reads the thread's covered translations: an agent that invalidates one turns this transition into the longer
    one (Machine._settle_joins), so it must depend on it. Its last step is taken as a completion of them, an
    over-approximation."""
    steps = p.steps
    if not oracle.covered:  # the common case (nothing covered: nothing to turn stale), asked for every state
        return (NOTHING,) * len(steps)
    out = [covering(oracle, tid, step) for step in steps]
    if p.uncovered is not None and oracle.covered:
        out[-1] = out[-1] | oracle.covering(tid)
    return tuple(out)


def transition_context(footprints: Footprints, oracle: Oracle, tid: int, p: Resolved, s: State) -> object:
    """Footprints.transition_context of thread ``tid``'s transition at ``p`` in state ``s``, with its coverings():
    what the reducer's and the sleep sets' memos key a thread transition's footprint on. While nothing is covered,
    a transition none of whose steps reads the state for its footprint (Resolved.contexts empty) has as context
    each step's empty covering, and is answered without the calls: most transitions, asked in every state."""
    steps = p.steps
    if not p.contexts and not oracle.covered:
        return NOTHING if len(steps) == 1 else (NOTHING,) * len(steps)
    return footprints.transition_context(tid, p.pc[0], steps, s, coverings(oracle, tid, p))
