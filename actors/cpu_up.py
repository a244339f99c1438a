"""arch=up on a CPU actor: every thread shares one CPU, a thread holding a PTL is not preempted, and a state in
which every thread waits is a hang (mixed into ``actors.cpu.CpuCore``, whose lock and thread sets it uses)."""

from __future__ import annotations

from kernel_model.steps import Step


class TrialHung(RuntimeError):
    """Every thread of this CPU waits for another (arch=up deadlock)."""


class UpScheduling:
    """Turn-taking for arch=up (a mixin: state lives in CpuCore)."""

    # --- arch=up: one CPU, several threads ---------------------------------------------------------------------
    def _wait_turn(self, tid: int) -> None:
        """A thread holding a PTL is not preempted: nobody else steps until it unlocks."""
        while self.ptl_holder not in (None, tid):
            self.turn_waiting.add(tid)
            try:
                self._check_stuck()
                self.cv.wait(0.5)
            finally:
                self.turn_waiting.discard(tid)

    def _wait_for_change(self, tid: int, step: Step) -> None:
        self.blocked.add(tid)  # until the next step of any thread (which clears the set)
        self._check_stuck()
        self.cv.wait(0.5)

    def _check_stuck(self) -> None:
        """Hung when every unfinished thread either failed its blocking step since the last step anyone took, or
        waits for a PTL holder to unlock (judged now: a waiter may not have woken up yet)."""
        if self.hung:
            raise TrialHung()
        waiting_turn = {t for t in self.turn_waiting if self.ptl_holder not in (None, t)}
        if self.unfinished and self.unfinished <= (self.blocked | waiting_turn):
            self.hung = True
            self.cv.notify_all()
            raise TrialHung()

    def _after_up_step(self, tid: int, step: Step) -> None:
        if step.op == "spin_lock":
            self.ptl_holder, self.ptl_depth = tid, self.ptl_depth + 1
        elif step.op == "spin_unlock" and self.ptl_holder == tid:
            self.ptl_depth -= 1
            if self.ptl_depth == 0:
                self.ptl_holder = None
        self.blocked.discard(tid)
        self.blocked.clear()  # something changed: every waiter retries
        self.waiting.pop(tid, None)
        self.cv.notify_all()
