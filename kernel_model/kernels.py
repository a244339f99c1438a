"""The fix registry: the TLB-shootdown fixes of mm's history, each a named switch, and which kernel has which.

A ``Fix`` is one upstream commit that closed a race the model can reach. It says what the commit is (id, title,
date, the first release that contains it), which race it closed (the library scenario that shows it), and how
the model turns it on or off: either through a configuration knob that already existed before the registry
(``knob``: the seed's fix is ``ordering``, its follow-up ``delayed_batches``), or as a plain switch, listed in
``Config.without`` when the kernel lacks it (the kernel paths test ``cfg.fixed(name)``).

``kernel_for(version)`` is the set of fixes merged by a release; ``kernel_config(version)`` the configuration
overrides that give that kernel. The oracle never reads this module: a kernel is configuration.

To add a fix: append one ``Fix(...)`` to ``REGISTRY`` (keep it in release order), make the kernel path test
``cfg.fixed("<name>")``, and give it a library scenario whose description names the commit id.

Releases were checked against the commits' dates and the mainline tags they first appear under (docs/history.md
cites where): a commit merged during a release's -rc phase is in that release.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Final


class KernelError(ValueError):
    """A kernel version the registry does not know; the message says what it accepts."""


@dataclass(frozen=True, slots=True)
class Fix:
    name: str  # the switch's name (Config.without lists the fixes a kernel lacks)
    commit: str  # the upstream commit id, 12 hex digits
    title: str  # the commit's subject line
    date: str  # the commit's author date, YYYY-MM
    release: str  # the first mainline release that contains it, "MAJOR.MINOR"
    race: str  # one line: the window the commit closed
    scenario: str | None  # the library scenario that shows the race before the fix
    knob: tuple[str, object, object] | None = None  # (config key, value with the fix, value without); None: a switch
    config: tuple[tuple[str, object], ...] = ()  # what the scenario needs besides the kernel (e.g. arch)


REGISTRY: Final[tuple[Fix, ...]] = (
    # 29eb77825cc7 was committed to mainline on 2013-06-06, between v3.10-rc4 and -rc5 (its committer date and
    # parent, a merge of kbuild's rc-fixes, in a mirror of Linus's tree): first in v3.10 (docs/history.md).
    Fix("no_tlb_fast_mode", "29eb77825cc7", "arch, mm: Remove tlb_fast_mode()", "2013-06", "3.10",
        "on UP tlb_fast_mode() was 1 (asm-generic/tlb.h, !CONFIG_SMP), so __tlb_remove_page freed each page at "
        "once (free_page_and_swap_cache, under the PTL) and the TLB flush came later; since mmu_gather became "
        "preemptible (3.0) a zapper preempted after pte_unmap_unlock let another task of the mm use the CPU's "
        "stale TLB entry of a page already freed",
        "up_fast_mode", config=(("arch", "up"),)),
    Fix("flush_before_unlock", "1cf35d47712d", "mm: split 'tlb_flush_mmu()' into tlb flushing and memory freeing "
        "parts", "2014-04", "3.15",
        "zap_pte_range flushed only after pte_unmap_unlock (a dirty PTE forced no flush at all: the flush came "
        "at the end of the zap): page_mkclean could clean a dirty shared page "
        "while another CPU's TLB still held a writable entry for it",
        "flush_after_unlock", config=(("arch", "up"),)),
    Fix("mremap_dirty_flush", "5d1904204c99", "mremap: fix race between mremap() and page cleanning", "2016-11",
        "4.9",
        "move_ptes moved a dirty PTE and dropped the PTLs before flushing the old address: folio_mkclean found the "
        "page at its new address, cleaned it and flushed only that address, while another CPU still stored "
        "through the old address's dirty TLB entry into a page writeback had already snapshotted",
        "mremap_writeback"),
    Fix("tlb_flush_nested", "99baac21e458", "mm: fix MADV_[FREE|DONTNEED] TLB flush miss problem", "2017-08",
        "4.13",
        "two MADV_DONTNEEDs of one range under mmap_lock read: the one that finds the PTEs already cleared flushes "
        "nothing and returns while the other's flush is still pending",
        "parallel_dontneed"),
    Fix("flush_tlb_batched_pending", "3ea277194daa", "mm, mprotect: flush TLB if potentially racing with a "
        "parallel reclaim leaving stale TLB entries", "2017-08", "4.13",
        "reclaim's try_to_unmap cleared the PTE and deferred its flush (TTU_BATCH_FLUSH): mprotect found the PTE "
        "none, flushed nothing and returned while a writable TLB entry still allowed stores",
        "mprotect_reclaim"),
    Fix("mremap_flush_under_ptl", "eb66ae030829", "mremap: properly flush TLB before releasing the page",
        "2018-10", "4.19",
        "move_ptes moved a clean PTE and dropped the PTLs before flushing the old address: ftruncate zapped the "
        "page at its new address and freed it while a stale TLB entry still mapped it (CVE-2018-18281)",
        "mremap_truncate"),
    Fix("delay_rmap", "5df397dec7c4", "mm: delay page_remove_rmap() until after the TLB has been flushed",
        "2022-11", "6.2",
        "zap removed a dirty shared page's rmap before the TLB flush: folio_mkclean skipped it as unmapped and "
        "writeback cleaned it while a stale writable TLB entry lived",
        "madv_dontneed", knob=("ordering", "delayed", "eager")),
    Fix("delayed_rmap_batches", "c47454823bd4", "mm: mmu_gather: allow more than one batch of delayed rmaps",
        "2022-12", "6.2",
        "not a race: the seed patch refused a new batch while delayed rmaps were pending (a TLB flush every "
        "MMU_GATHER_BUNDLE dirty pages, will-it-scale page_fault3 -53%); its follow-up lets them sit in the local "
        "and the active batch",
        "zap_many_pages", knob=("delayed_batches", "local+active", "active")),
)

BY_NAME: Final[dict[str, Fix]] = {f.name: f for f in REGISTRY}
# The fixes carried by Config.without (the others are already configuration keys of their own).
SWITCHES: Final[tuple[str, ...]] = tuple(f.name for f in REGISTRY if f.knob is None)
# Old mutant names that are now kernels without a fix: --mutant flush_after_unlock still works and means the
# kernel without flush_before_unlock (Config.fixed answers for both).
MUTANT_ALIASES: Final[dict[str, str]] = {"flush_after_unlock": "flush_before_unlock"}

# Mainline releases the registry accepts, by major: the last minor of each series. 6.x grows with time; the
# newest is what `--kernel latest` and `tlbrace fuzz --kernel <newest>` mean.
_LAST_MINOR: Final[dict[int, int]] = {3: 19, 4: 20, 5: 19, 6: 18}
NEWEST: Final = f"6.{_LAST_MINOR[6]}"
_VERSION = re.compile(r"v?(\d+)\.(\d+)", re.ASCII)  # ASCII: \d matched '٤.١٣', which int() reads as 4.13


def parse_version(text: str) -> tuple[int, int]:
    """'4.13' or 'v4.13' (or 'latest') -> (4, 13); anything else, or a release that does not exist, is refused."""
    if text == "latest":
        text = NEWEST
    m = _VERSION.fullmatch(text.strip())
    if m is None:
        raise KernelError(f"kernel {text!r}: expected a mainline release MAJOR.MINOR such as 4.13 or 6.2 "
                          f"(or 'latest'); known: {_known()}")
    major, minor = int(m.group(1)), int(m.group(2))
    if major not in _LAST_MINOR or not 0 <= minor <= _LAST_MINOR[major]:
        raise KernelError(f"kernel {text!r}: not a mainline release the registry knows; known: {_known()}")
    return major, minor


def _known() -> str:
    return ", ".join(f"{major}.0-{major}.{last}" for major, last in _LAST_MINOR.items())


def version_text(version: tuple[int, int]) -> str:
    return f"{version[0]}.{version[1]}"


def kernel_for(version: str) -> frozenset[str]:
    """The fixes merged by ``version``."""
    v = parse_version(version)
    return frozenset(f.name for f in REGISTRY if parse_version(f.release) <= v)


# 72b252aed506 "mm: send one IPI per CPU to TLB flush all entries after unmapping pages" (Mel Gorman, v4.3): the
# first release whose reclaim defers its TLB flushes (TTU_BATCH_FLUSH). Not a fix: the window 3ea277194daa closed
# opened with it, so a kernel before 4.3 has neither (Config.batched_unmap_flush false).
BATCHED_UNMAP_FLUSH_RELEASE: Final = "4.3"
# dd2283f2605e "mm: mmap: zap pages with read mmap_sem in munmap" (Yang Shi, v4.20 merge window): munmap downgrades
# mmap_lock to read before unmap_region. Not a fix either: before it munmap's zap could not overlap a
# MADV_DONTNEED at all, so 99baac21e458's window was only between two MADV_DONTNEEDs (Config.munmap_downgrade).
MUNMAP_DOWNGRADE_RELEASE: Final = "4.20"
# 4eda48235011 "mm: vmscan: only write dirty pages that the scanner has seen twice" (Johannes Weiner, v4.11):
# kswapd pages a dirty file folio out only with PG_reclaim set by an earlier pass; before it, on the first pass
# (with PGDAT_DIRTY). Not a fix: it widened the activate branch, which unlocks the folio before the deferred
# flush (docs/reclaim.md; Config.reclaim_seen_twice).
RECLAIM_SEEN_TWICE_RELEASE: Final = "4.11"
# 5df397dec7c4 itself (v6.2): zap_pte_range forces the flush for a dirty file PTE only inside
# `if (tlb_delay_rmap(tlb))`, constant false on UP and s390; before it, on every arch since 1cf35d47712d. Not a
# fix on UP: it reopened race 1 (flush after unlock) there for a preempted zapper (Config.zap_dirty_forces_flush,
# docs/up-v6.2.md).
ZAP_DIRTY_FLUSH_DROPPED_RELEASE: Final = "6.2"
# 4a18419f71cd "mm/mprotect: use mmu_gather" (Nadav Amit, v6.0): do_mprotect_pkey gathers, and its tlb_finish_mmu
# flushes the range when another gather of the mm is pending (mm_tlb_flush_nested), even with no PTE changed. Not
# a fix: it closed, as a side effect, the window where mprotect returns before a concurrent zap's flush
# (tests/scenarios/unseen18_truncate_vs_mprotect_warm.toml on 6.2 UP; Config.mprotect_gathers). Before it (from
# 4.13) mprotect was counted in mm->tlb_flush_pending but never read it (kernel_model.mprotect).
MPROTECT_MMU_GATHER_RELEASE: Final = "6.0"


def kernel_config(version: str) -> dict[str, Any]:
    """The configuration overrides that make the model this kernel: each knob set as the kernel has it, and the
    switches it lacks in ``without``."""
    fixes = kernel_for(version)
    v = parse_version(version)
    out: dict[str, Any] = {"batched_unmap_flush": v >= parse_version(BATCHED_UNMAP_FLUSH_RELEASE),
                           "munmap_downgrade": v >= parse_version(MUNMAP_DOWNGRADE_RELEASE),
                           "reclaim_seen_twice": v >= parse_version(RECLAIM_SEEN_TWICE_RELEASE),
                           "zap_dirty_forces_flush": v < parse_version(ZAP_DIRTY_FLUSH_DROPPED_RELEASE),
                           "mprotect_gathers": v >= parse_version(MPROTECT_MMU_GATHER_RELEASE)}
    for f in REGISTRY:
        if f.knob is not None:
            key, on, off = f.knob
            out[key] = on if f.name in fixes else off
    out["without"] = tuple(name for name in SWITCHES if name not in fixes)
    return out


def previous_release(version: str) -> str:
    """The release before ``version`` (4.13 -> 4.12, 4.0 -> 3.19)."""
    major, minor = parse_version(version)
    if minor > 0:
        return f"{major}.{minor - 1}"
    if major - 1 not in _LAST_MINOR:
        raise KernelError(f"kernel {version!r}: no earlier release is known")
    return f"{major - 1}.{_LAST_MINOR[major - 1]}"


def history_kernels() -> tuple[str, ...]:
    """The default kernels of ``tlbrace history``: for each fix, and for each change that is not a fix but moves
    a window (reclaim's batched flush, kswapd's seen-twice rule, munmap's downgrade, mprotect's mmu_gather, 6.2's
    zap without the forced flush on UP and s390), the release before it and the release with it, and the newest,
    in release order."""
    names = {NEWEST}
    moves = [BATCHED_UNMAP_FLUSH_RELEASE, RECLAIM_SEEN_TWICE_RELEASE, MUNMAP_DOWNGRADE_RELEASE,
             MPROTECT_MMU_GATHER_RELEASE, ZAP_DIRTY_FLUSH_DROPPED_RELEASE]
    for release in [f.release for f in REGISTRY] + moves:
        names |= {previous_release(release), release}
    return tuple(sorted(names, key=parse_version))


def fixes_in_config(without: tuple[str, ...], knobs: dict[str, Any]) -> frozenset[str]:
    """The fixes a configuration has (the inverse of kernel_config): for reports that name a run's fixes."""
    out = set()
    for f in REGISTRY:
        if f.knob is not None:
            if knobs.get(f.knob[0]) == f.knob[1]:
                out.add(f.name)
        elif f.name not in without:
            out.add(f.name)
    return frozenset(out)
