"""Scenario files: TOML in, a validated ``kernel_model.program.Scenario`` out.

A scenario names the pages, the threads (one simulated CPU each) and their programs of user-level operations,
and the default configuration. Library scenarios live in ``scenarios/library/NAME.toml``; any other TOML file
can be loaded by path. Every problem in a file is a ``ScenarioError`` that names the file, the key and what was
expected; bad input never produces a traceback.

The format (every key other than ``threads`` is optional)::

    name = "madv_dontneed"            # must equal the file stem for library files (default: the stem)
    description = "one line"          # a single line
    [params]                          # integers >= 0, overridable from the command line (--param stores=3);
                                      # each must be used by some key (repeat = "stores"): an unused one is an error
    stores = 2
    [setup]
    pages = 1                         # int or a param name (string); >= 1
    ptes_per_table = 512              # int or param name; pages per PTE table = per PTL (split PTLs); 1..8192
    mapped = true                     # pages start mapped present+writable+dirty, PG_dirty set
    warm_tlb = ["writer"]             # thread names (or their count-expanded names) whose CPU starts with a
                                      # dirty TLB entry per page; needs mapped = true
    anon = false                      # anonymous private memory instead of a shared file
                                      # (any other boolean field of kernel_model.program.Setup is a key too)
    [config]                          # defaults for kernel_model.config.Config fields (ordering, arch,
                                      # delayed_batches, max_gather_batch, max_gather_batch_count,
                                      # mmu_gather_bundle, mutant); the command line overrides them
    [[threads]]
    name = "writer"                   # letters, digits, '_' and '-', starting with a letter or '_'; at most 64
    count = 1                         # int or param name: N copies named writer0..writerN-1 (1 keeps the name)
    program = [ { op = "store", pages = [0], repeat = "stores" } ]

Operations (``program`` entries, and ``body`` entries of a loop):

- ``op``: one of ``kernel_model.program.OP_KINDS``: store, load, counter, madvise_dontneed, munmap, mmap_fixed,
  mmap, msync, evict, mremap, ftruncate, mprotect, reclaim, loop. ``counter`` (Nadav Amit's PoC writer) increments one page's word through the TLB
  until the translation is gone, so it needs exactly one page and a thread whose TLB starts warm for it (``warm_tlb``).
- ``counter`` also takes ``refault`` (boolean, default false: after the translation is gone the counter
  faults the page back in and carries on, as the PoC's loop does) and ``max`` (int or param name, >= 1: at most
  that many increments; default unbounded without refault, REFAULT_COUNTER_MAX with it). Without refault a
  counter may not sit in a loop nor repeat (its later passes would find the translation gone and do nothing).
- ``mmap`` maps its address range (``pages``) to a file range, ``offset = N`` (file page N at the first
  address, N+1 at the next, ...; ``N + len(pages) <= setup.pages``), or to anonymous memory, ``anon = true``
  (one of the two is required). It fails, changing nothing, while an address of the range is still mapped
  (MAP_FIXED_NOREPLACE's EEXIST): ``munmap`` first. ``mmap_fixed`` takes the same optional ``offset`` / ``anon``
  (default: the same file range, or anonymous memory in an anonymous setup) and unmaps the old range first.
  ``offset`` needs a file: not with ``setup.anon = true``.
- ``pages``: a list of page indices (each ``< setup.pages``), or ``"all"``. Required for store/load (a store
  to several pages is one store per page, in order). Omitted means every page for madvise_dontneed, munmap,
  mmap_fixed, mmap, msync and evict. The zap operations (madvise_dontneed, munmap, mmap_fixed) and mmap cover
  one address range, so their pages must be contiguous and ascending; msync/evict pages must be distinct.
- ``mremap`` takes ``to`` (int or param name): the first page of the destination, a range as long as
  ``pages`` (contiguous) inside setup.pages and apart from it; whatever is mapped there is unmapped first
  (MREMAP_FIXED). ``ftruncate`` sets the file's size to its first listed page, so its pages must run to the
  end (``[k, ..., pages - 1]``; omitted: every page, ftruncate to 0). Any such size is allowed whatever an
  earlier ftruncate left: below the current size it shrinks the file (its blocks past the size become holes),
  above it grows the file again (i_size only: the pages it grows over read back as holes, zeros). The size
  ``setup.pages`` itself (growing back to the whole mapping) has no pages to list and is not expressible.
  ``mprotect`` (PROT_READ) covers one
  contiguous range. ``reclaim`` (kswapd's shrink_folio_list) takes distinct pages. mremap, ftruncate and
  reclaim need a backing file.
- ``repeat``: int or param name, >= 1, default 1.
- ``op = "loop"`` takes ``times`` (int or param name, >= 1) and ``body`` (a non-empty list of operations) and
  nothing else; it becomes ``Op("loop", (), times, body)``.

End-of-run checks (optional, any number): the oracle judges each as the invariant ``expect_failed`` once every
thread has finished (kernel_model.oracle)::

    [[expect]]
    kind = "file_holds_last_store"    # after a final sync, the file holds the last value `thread` stored
    thread = "writer"                 # a thread name (after count expansion)
    page = 0                          # int or param name, < setup.pages: a page that thread's store or counter
                                      # ops write (any other page could never fail the check: an error)

A file scenario only (``anon = true`` has no file). Writers an expectation names are no longer interchangeable
(controlled.symmetry is off for such scenarios).

Rules across keys: anon memory has no backing file, so ``anon = true`` forbids msync and evict. A store to a
page that is not mapped is fine (it faults in). ``warm_tlb = ["writer"]`` names every copy of a counted thread.
Thread names, after count expansion, must be distinct. Unknown keys anywhere are errors. Sizes are bounded
(MAX_PAGES pages, MAX_THREADS threads, MAX_LOOP_DEPTH nested loops, MAX_OPS_PER_THREAD unrolled operations a
thread, MAX_OPS_TOTAL in all threads, MAX_PAGE_THREADS pages times threads) so that a typo is an error here rather than an out-of-memory failure later.
"""

from __future__ import annotations

import difflib
import re
import sys
import tomllib
from dataclasses import fields
from pathlib import Path
from typing import Any, Final

from kernel_model.config import ARCHES, DELAYED_BATCHES, MUTANTS, ORDERINGS, Config, ConfigError
from kernel_model.constants import VMA_ANON
from kernel_model.program import (EXPECT_KINDS, OP_KINDS, REFAULT_COUNTER_MAX, Expect, Op, Scenario, Setup, Thread,
                                  flatten)
from scenarios.decimal_text import decimal_int

LIBRARY_DIR: Final = Path(__file__).resolve().parent / "library"
STDIN: Final = "-"  # standard input (scenarios.input_files.STDIN)
STDIN_STEM: Final = "stdin"  # the default name of a scenario read from it

# Bounds that keep a typo (pages = 10**9) from turning into an out-of-memory error far from the file.
# Pages: one schedule costs O(pages^2) in the controlled runtime. After every transition the machine keys the whole
# state and the oracle checks every folio (Oracle.check), and the paths take O(pages) transitions even for one
# page's msync (its walk over the file). Measured (compiled, one random schedule of library-style scenarios): 512
# pages 4.5 s, 1,024 pages 11 s, 2,048 pages 21 s, 4,096 pages 69 s, 65,536 pages never finished; from about 420
# pages a random/pct run with msync is cut at MAX_SAMPLE_STEPS (10,000 transitions) before its verdict. Making the
# checks incremental would not lift this: the key per transition stays O(pages). 2,048 is the largest that runs
# in about 20 s a schedule.
MAX_PAGES: Final = 1 << 11
# PTEs per table: the largest PTRS_PER_PTE of any mainline architecture (64K pages on arm64, loongarch or mips:
# 1 << (PAGE_SHIFT - 3)). A larger table holds every page of a scenario just as 8,192 does (MAX_PAGES is less),
# and the wild runtime sends the setup to its actors as msgpack, whose integers end at 2**64: a larger value
# there was an internal error after Ray had started.
MAX_PTES_PER_TABLE: Final = 1 << 13
MAX_THREADS: Final = 1024
MAX_OPS_PER_THREAD: Final = 1_000_000  # after loops and repeats are unrolled (program.flatten)
# All threads together, unrolled: what the machine builds per operation (its footprint, its unrolled Op) costs
# about 240 bytes and 20 us (one thread of 1,000,000 stores: 241 MB and 21 s before the first state). Without
# it, 1,022 writers of 1,000,000 stores each passed every other bound and ran out of memory without a word.
MAX_OPS_TOTAL: Final = 1_000_000
# A param the scenario never uses is bounded by nothing else, yet it is written into every log, schedule and
# results header as a 64-bit msgpack integer (a larger one was an internal error after the search).
MAX_PARAM: Final = (1 << 63) - 1
# Pages times threads (each thread a CPU): every CPU's TLB and its flush IPI's footprint (controlled.reduction)
# span every page, about 200 MB a thread at 65,536 pages. Measured: 65,536 pages with 4 threads 834 MB; with 16
# threads past 8 GB, and 1,000 threads of one msync each (every other bound held) ate the machine's memory.
MAX_PAGE_THREADS: Final = 1 << 18
MAX_LOOP_DEPTH: Final = 16  # flatten recurses once per level
# Scenario names become parts of file names (logs, schedules, results): no '/', no leading '.', bounded length.
_SCENARIO_NAME_RE: Final = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}")

ZAP_OPS: Final = ("madvise_dontneed", "munmap", "mmap_fixed")
FILE_OPS: Final = ("msync", "evict", "mremap", "ftruncate", "reclaim")  # need a backing file
# Operations that take a page's translation away from every CPU (their flush ends a counter without refault).
UNMAPPING_OPS: Final = ZAP_OPS + ("mremap", "ftruncate")
PAGE_REQUIRED_OPS: Final = ("store", "load", "counter")

_TOP_KEYS: Final = ("name", "description", "params", "setup", "config", "threads", "expect")
_EXPECT_KEYS: Final = ("kind", "thread", "page")
# Every boolean field of Setup is a [setup] key of the same name (mapped, anon, and any the model adds later).
_SETUP_DEFAULTS: Final = {f.name: f.default for f in fields(Setup)}
_SETUP_BOOLS: Final = tuple(k for k, v in _SETUP_DEFAULTS.items() if isinstance(v, bool))
_SETUP_KEYS: Final = ("pages", "ptes_per_table", "warm_tlb") + _SETUP_BOOLS
_THREAD_KEYS: Final = ("name", "count", "program")
_OP_KEYS: Final = ("op", "pages", "repeat")
_COUNTER_KEYS: Final = ("refault", "max")
_MMAP_KEYS: Final = ("offset", "anon")  # mmap and mmap_fixed: what the range maps
MMAP_OPS: Final = ("mmap", "mmap_fixed")
RANGE_OPS: Final = ZAP_OPS + ("mmap", "mremap", "mprotect", "ftruncate")  # one range each: contiguous, ascending
_MREMAP_KEYS: Final = ("to",)
_LOOP_KEYS: Final = ("op", "times", "body")
_CONFIG_KEYS: Final = tuple(f.name for f in fields(Config))
_CONFIG_CHOICES: Final = {"ordering": ORDERINGS, "arch": ARCHES, "delayed_batches": DELAYED_BATCHES,
                          "mutant": MUTANTS}
# Thread names head the columns of stories and race diagrams, name CPUs in every log event and in messages; a
# name of thousands of characters made every one of them unreadable. 64 as for scenario names (a count adds up to
# 4 digits to it).
MAX_THREAD_NAME: Final = 64
_THREAD_NAME_RE: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
_PARAM_RE: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class ScenarioError(ValueError):
    """A scenario (or a --param) is not valid. The message names the file, the key and what was expected."""

    def __init__(self, message: str, *, file: str | None = None, key: str | None = None) -> None:
        super().__init__(message)
        self.file = file
        self.key = key


# --- public API ---------------------------------------------------------------------------------------------


def library_names() -> list[str]:
    """The names of the library scenarios, sorted."""
    return sorted(p.stem for p in LIBRARY_DIR.glob("*.toml"))


def list_scenarios() -> list[tuple[str, str, dict[str, int]]]:
    """(name, one-line description, default params) of every library scenario, sorted by name."""
    out = []
    for name in library_names():
        scenario = load_scenario(name)
        out.append((scenario.name, scenario.description, dict(scenario.params)))
    return out


def load_scenario(name_or_path: str, params: dict[str, int] | None = None) -> Scenario:
    """Load a library scenario by name, or a user's TOML file by path; ``params`` override its ``[params]``."""
    from scenarios.input_files import MAX_SCENARIO_BYTES, InputFileError, compressed, read_input

    if "\0" in str(name_or_path):
        raise ScenarioError(f"{name_or_path!r}: a scenario name or path cannot contain a NUL byte")
    label, path, library = _locate(str(name_or_path))
    try:
        raw = read_input(STDIN if str(name_or_path) == STDIN else path, "scenario file", MAX_SCENARIO_BYTES,
                         pipes=True)
    except InputFileError as exc:
        raise ScenarioError(str(exc), file=label) from None
    why = compressed(label, raw)  # "not UTF-8 text: invalid start byte at byte 1" said nothing of gzip
    if why is not None:
        raise ScenarioError(why, file=label)
    try:
        text = raw.decode("utf-8-sig")  # a byte-order mark (Notepad's UTF-8) is no TOML statement: drop it
    except UnicodeDecodeError as exc:
        raise ScenarioError(f"{label}: not UTF-8 text: {exc.reason} at byte {exc.start}", file=label) from None
    return _Builder(label, path.stem, library, _parse_toml(text, label), text).build(params)


def load_scenario_text(text: str, params: dict[str, int] | None = None, *, name: str,
                       label: str | None = None) -> Scenario:
    """A scenario from its TOML text, as a log or schedule header carries it: no file is opened. ``name`` stands
    in for a file's stem (the scenario's name unless the text has ``name =``)."""
    from scenarios.input_files import MAX_SCENARIO_BYTES

    label = label or f"scenario {name!r} (from its source text)"
    if len(text) > MAX_SCENARIO_BYTES:  # characters, at least as many bytes: the file cap applies to the text too
        raise ScenarioError(f"{label}: {len(text):,} characters, more than a scenario file may hold "
                            f"({MAX_SCENARIO_BYTES:,} bytes)", file=label)
    return _Builder(label, name, False, _parse_toml(text, label), text).build(params)


def _parse_toml(text: str, label: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"{label}: invalid TOML: {exc}", file=label) from None
    except RecursionError:
        raise ScenarioError(f"{label}: invalid TOML: nested too deeply", file=label) from None
    except ValueError:  # an integer past Python's str-to-int digit limit (sys.set_int_max_str_digits)
        raise ScenarioError(f"{label}: invalid TOML: an integer has more than {sys.get_int_max_str_digits()} "
                            "digits", file=label) from None


def parse_params(items: list[str]) -> dict[str, int]:
    """``["pages=2", "stores=3"]`` (from ``--param``) → ``{"pages": 2, "stores": 3}``."""
    out: dict[str, int] = {}
    for item in items:
        name, sep, value = item.partition("=")
        name, value = name.strip(), value.strip()
        if not sep or not _PARAM_RE.fullmatch(name):
            raise ScenarioError(f"--param {item!r}: expected NAME=INTEGER, e.g. pages=2", key="--param")
        try:
            number = decimal_int(value)
        except ValueError:
            raise ScenarioError(f"--param {item!r}: expected an integer value in ASCII digits after '=', got "
                                f"{value!r}",
                                key="--param") from None
        if name in out:
            raise ScenarioError(f"--param {item!r}: {name} is given twice", key="--param")
        out[name] = number
    return out


# --- implementation -----------------------------------------------------------------------------------------


def _locate(name_or_path: str) -> tuple[str, Path, bool]:
    """(label for messages, file, whether it is a library file). ``-`` is standard input (its default name, the
    stem a file would give, is ``stdin``: '-' is no scenario name)."""
    if name_or_path == STDIN:
        return "- (standard input)", Path(STDIN_STEM), False
    looks_like_path = "/" in name_or_path or "\\" in name_or_path or name_or_path.endswith(".toml")
    if not looks_like_path and name_or_path in library_names():
        return f"library:{name_or_path}", LIBRARY_DIR / f"{name_or_path}.toml", True
    path = Path(name_or_path)
    if looks_like_path or path.exists():
        return name_or_path, path, False
    raise ScenarioError(
        f"{name_or_path}: no library scenario or file of that name{did_you_mean(name_or_path, library_names())} "
        f"(library: {', '.join(library_names()) or 'empty'})", file=name_or_path)


def did_you_mean(word: object, choices: Any) -> str:
    """" (did you mean 'madvise_dontneed'?)" when ``word`` is a likely misspelling of one of ``choices``, else ""
    (a kernel engineer's typo in an op, key, param or thread name gets the name it most likely meant)."""
    if not isinstance(word, str):
        return ""
    close = difflib.get_close_matches(word, [str(c) for c in choices], n=1, cutoff=0.6)
    if not close:
        lowered = {str(c).lower(): str(c) for c in choices}  # MADVISE_DONTNEED, Store
        close = [lowered[word.lower()]] if word.lower() in lowered else []
    return f" (did you mean {close[0]!r}?)" if close else ""


def _show(value: Any) -> str:
    kind = {bool: "boolean", int: "integer", float: "float", str: "string", list: "array", dict: "table"}
    return f"{value!r} ({kind.get(type(value), type(value).__name__)})"


class _Reader:
    """Typed reads of one scenario document, each naming the file and key when the value is wrong."""

    def __init__(self, label: str, stem: str, library: bool, doc: dict[str, Any], text: str) -> None:
        self.label = label
        self.stem = stem
        self.library = library
        self.doc = doc
        self.text = text
        self.params: dict[str, int] = {}
        self.used_params: set[str] = set()  # the params some key read (integer): an unread one is an error
        self.bases: dict[str, list[str]] = {}  # thread name as written -> its count-expanded names (warm_tlb)

    def err(self, key: str, what: str) -> ScenarioError:
        return ScenarioError(f"{self.label}: {key}: {what}", file=self.label, key=key)

    # -- generic checks --
    def table(self, key: str, value: Any, allowed: tuple[str, ...]) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.err(key, f"expected a table, got {_show(value)}")
        for k in value:
            if k not in allowed:
                where = f"{key}.{k}" if key else k
                raise self.err(where, f"unknown key{did_you_mean(k, allowed)} (expected one of {', '.join(allowed)})")
        return value

    def boolean(self, key: str, value: Any) -> bool:
        if not isinstance(value, bool):
            raise self.err(key, f"expected true or false, got {_show(value)}")
        return value

    def string(self, key: str, value: Any) -> str:
        if not isinstance(value, str):
            raise self.err(key, f"expected a string, got {_show(value)}")
        return value

    def integer(self, key: str, value: Any, minimum: int, maximum: int | None = None, why: str = "") -> int:
        """An int, or the name of a param (resolved), within [minimum, maximum] (``why`` the maximum)."""
        if isinstance(value, str):
            if value not in self.params:
                known = ", ".join(sorted(self.params)) or "none declared"
                raise self.err(key, f"expected an integer or a param name (params: {known}), got {value!r}"
                                    + did_you_mean(value, self.params))
            number = self.params[value]
            self.used_params.add(value)
            via = f" (param {value} = {number})"
        elif isinstance(value, int) and not isinstance(value, bool):
            number, via = value, ""
        else:
            raise self.err(key, f"expected an integer or a param name, got {_show(value)}")
        if number < minimum:
            raise self.err(key, f"expected an integer >= {minimum}, got {number}{via}")
        if maximum is not None and number > maximum:
            raise self.err(key, f"expected an integer <= {maximum}{why}, got {number}{via}")
        return number


class _OpBuilder(_Reader):
    """Thread programs: operations, their pages and their op-specific keys (counter, mmap)."""

    def build_ops(self, key: str, value: Any, pages: int, anon: bool, depth: int) -> tuple[Op, ...]:
        if not isinstance(value, list):
            raise self.err(key, f"expected a list of operations, got {_show(value)}")
        if not value:
            raise self.err(key, "expected at least one operation, got an empty list")
        ops = tuple(self.build_op(f"{key}[{j}]", item, pages, anon, depth) for j, item in enumerate(value))
        length = sum(_flat_len(op) for op in ops)
        if length > MAX_OPS_PER_THREAD:
            raise self.err(key, f"unrolls to {length} operations; at most {MAX_OPS_PER_THREAD} are allowed")
        return ops

    def build_op(self, key: str, value: Any, pages: int, anon: bool, depth: int) -> Op:
        if not isinstance(value, dict):
            raise self.err(key, f"expected an operation table such as {{ op = \"store\", pages = [0] }}, "
                                f"got {_show(value)}")
        kinds = ", ".join(OP_KINDS)
        if "op" not in value:
            raise self.err(f"{key}.op", f"missing: expected one of {kinds}")
        kind = value["op"]
        if not isinstance(kind, str) or kind not in OP_KINDS:
            got = repr(kind) if isinstance(kind, str) else _show(kind)
            raise self.err(f"{key}.op", f"expected one of {kinds}, got {got}{did_you_mean(kind, OP_KINDS)}")
        if kind == "loop":
            self.table(key, value, _LOOP_KEYS)
            if "times" not in value:
                raise self.err(f"{key}.times", "missing: a loop needs times (an integer or a param name)")
            times = self.integer(f"{key}.times", value["times"], 1)
            if "body" not in value:
                raise self.err(f"{key}.body", "missing: a loop needs a body (a list of operations)")
            if depth >= MAX_LOOP_DEPTH:
                raise self.err(f"{key}.body", f"loops nested too deeply (at most {MAX_LOOP_DEPTH} levels)")
            body = self.build_ops(f"{key}.body", value["body"], pages, anon, depth + 1)
            return Op("loop", (), times, body)
        self.check_op_keys(key, kind, value)
        if anon and kind in FILE_OPS:
            raise self.err(f"{key}.op", f"{kind} needs a backing file, but setup.anon = true (anonymous memory "
                                        "has no file to write back or evict)")
        repeat = self.integer(f"{key}.repeat", value.get("repeat", 1), 1)
        page_list = self.build_pages(f"{key}.pages", kind, value, pages)
        if kind == "counter":
            return self.build_counter(key, value, page_list, repeat, depth)
        if kind in MMAP_OPS:
            return Op(kind, page_list, repeat, target=self.build_target(key, kind, value, page_list, pages, anon))
        if kind == "mremap":
            return Op(kind, page_list, repeat, to=self.build_mremap_to(key, value, page_list, pages))
        if kind == "ftruncate" and page_list != tuple(range(page_list[0], pages)):
            raise self.err(f"{key}.pages", f"ftruncate(fd, first page) sets the file's size to the first listed page "
                                           f"and lists every page from there to the end of the file (setup.pages = "
                                           f"{pages}): expected [{page_list[0]}, ..., {pages - 1}], got "
                                           f"{list(page_list)}")
        return Op(kind, page_list, repeat)

    def build_mremap_to(self, key: str, value: dict[str, Any], page_list: tuple[int, ...], pages: int) -> int:
        """mremap's destination: the first page of a range as long as the source, inside setup.pages, not
        overlapping the source (the kernel's EINVAL)."""
        if "to" not in value:
            raise self.err(f"{key}.to", "missing: mremap needs to (the first page of the destination range)")
        to = self.integer(f"{key}.to", value["to"], 0, pages - len(page_list))
        if to < page_list[-1] + 1 and page_list[0] < to + len(page_list):
            raise self.err(f"{key}.to", f"the destination [{to}, {to + len(page_list) - 1}] overlaps the source "
                                        f"{list(page_list)}: expected ranges apart (mremap refuses overlap)")
        return to

    def build_target(self, key: str, kind: str, value: dict[str, Any], pages: tuple[int, ...], npages: int,
                     anon_setup: bool) -> int | None:
        """What an mmap or mmap_fixed maps: ``offset = N`` (file page N at the range's first address, the next
        at the next), ``anon = true`` (anonymous memory: new zeroed frames on first touch), or for mmap_fixed
        neither (the same file range again, or anonymous memory in an anonymous setup)."""
        anon = self.boolean(f"{key}.anon", value.get("anon", False))
        if "offset" in value:
            if anon:
                raise self.err(f"{key}.offset", "expected offset (a file range) or anon = true, not both")
            if anon_setup:
                raise self.err(f"{key}.offset", "a file offset needs a backing file, but setup.anon = true "
                                                "(expected anon = true, or no offset)")
            offset = self.integer(f"{key}.offset", value["offset"], 0)
            if offset + len(pages) > npages:
                raise self.err(f"{key}.offset", f"offset {offset} maps {len(pages)} page(s) past the end of the "
                                                f"file: expected offset + pages <= setup.pages = {npages}")
            return offset
        if anon:
            return VMA_ANON
        if anon_setup and "anon" in value:  # anon = false asks for a file the setup does not have
            raise self.err(f"{key}.anon", "anon = false asks for a file mapping, but setup.anon = true has no file "
                                          "(expected anon = true, or no anon key)")
        if kind == "mmap":
            raise self.err(key, "mmap needs what to map: offset = N (a file range) or anon = true")
        return None

    def check_op_keys(self, key: str, kind: str, value: dict[str, Any]) -> None:
        allowed = (_OP_KEYS + (_COUNTER_KEYS if kind == "counter" else ()) + (_MMAP_KEYS if kind in MMAP_OPS else ())
                   + (_MREMAP_KEYS if kind == "mremap" else ()))
        for k in value:
            if k not in allowed:
                hint = (" (only loops take times and body)" if k in ("times", "body") else
                        " (only counter takes refault and max)" if k in _COUNTER_KEYS else
                        " (only mmap and mmap_fixed take offset and anon)" if k in _MMAP_KEYS else
                        " (only mremap takes to)" if k in _MREMAP_KEYS else "")
                raise self.err(f"{key}.{k}", f"unknown key for op {kind}{did_you_mean(k, allowed)} (expected one "
                                             f"of {', '.join(allowed)}){hint}")

    def build_counter(self, key: str, value: dict[str, Any], pages: tuple[int, ...], repeat: int,
                      depth: int) -> Op:
        refault = self.boolean(f"{key}.refault", value.get("refault", False))
        limit = None
        if "max" in value:
            limit = self.integer(f"{key}.max", value["max"], 1, MAX_OPS_PER_THREAD)
        elif refault:
            limit = REFAULT_COUNTER_MAX  # a refaulting counter never loses its translation for good: bound it
        if not refault and (depth > 0 or repeat > 1):
            where = f"{key}.repeat" if repeat > 1 else f"{key}.op"
            raise self.err(where, "a counter without refault = true counts only through the translation it "
                                  "starts with, which the first pass ends with: later passes (a loop, or "
                                  "repeat) would do nothing. Expected refault = true here")
        return Op("counter", pages, repeat, refault=refault, max=limit)

    def build_pages(self, key: str, kind: str, op: dict[str, Any], npages: int) -> tuple[int, ...]:
        if "pages" not in op:
            if kind in PAGE_REQUIRED_OPS:
                raise self.err(key, f"missing: {kind} needs pages (a list of page indices, or \"all\")")
            return tuple(range(npages))
        value = op["pages"]
        if value == "all":
            return tuple(range(npages))
        if not isinstance(value, list):
            raise self.err(key, f"expected a list of page indices or \"all\", got {_show(value)}")
        if not value:
            raise self.err(key, "expected at least one page index (omit pages or use \"all\" for every page)")
        out: list[int] = []
        for j, p in enumerate(value):
            if not isinstance(p, int) or isinstance(p, bool):
                raise self.err(f"{key}[{j}]", f"expected a page index (an integer), got {_show(p)}")
            if not 0 <= p < npages:
                raise self.err(f"{key}[{j}]", f"page {p} is out of range: expected 0 <= page < setup.pages "
                                              f"= {npages}")
            out.append(p)
        if kind == "counter" and len(out) != 1:
            raise self.err(key, f"counter increments one word: expected exactly one page, got {out}")
        if kind in RANGE_OPS and out != list(range(out[0], out[0] + len(out))):
            raise self.err(key, f"{kind} covers one address range: expected contiguous ascending pages "
                                f"such as [{out[0]}, {out[0] + 1}], got {out}")
        if kind in FILE_OPS and len(set(out)) != len(out):
            raise self.err(key, f"expected distinct page indices, got {out}")
        return tuple(out)


class _Builder(_OpBuilder):
    """The whole scenario: its sections, and the rules across them."""

    # -- sections --
    def build(self, overrides: dict[str, int] | None) -> Scenario:
        doc = self.table("", self.doc, _TOP_KEYS)
        name = self.stem
        if "name" in doc:
            name = self.string("name", doc["name"])
            if not name.strip():
                raise self.err("name", "expected a non-empty string")
            if self.library and name != self.stem:
                raise self.err("name", f"expected {self.stem!r} (library files are named after their name), "
                                       f"got {name!r}")
        if not _SCENARIO_NAME_RE.fullmatch(name):  # it becomes part of file names (logs, schedules): no '/', no '..'
            raise self.err("name", f"expected letters, digits, '_', '-' and '.' (not first), at most 64 "
                                   f"characters, got {name!r:.80}" + ("" if "name" in doc else
                                                                     " (the file's name; set name = ...)"))
        description = ""
        if "description" in doc:
            description = self.string("description", doc["description"])
            if "\n" in description.strip():
                raise self.err("description", "expected one line (put details in TOML comments)")
            description = description.strip()
        self.params = self.build_params(doc.get("params", {}), overrides)
        config = self.build_config(doc.get("config", {}))
        setup_doc = self.table("setup", doc.get("setup", {}), _SETUP_KEYS)
        pages_value = setup_doc.get("pages", _SETUP_DEFAULTS["pages"])
        pages = self.integer("setup.pages", pages_value, 1)
        if pages > MAX_PAGES:
            via = f" (param {pages_value})" if isinstance(pages_value, str) else ""
            raise self.err("setup.pages", f"expected an integer <= {MAX_PAGES}, got {pages}{via}: every transition "
                                          "checks every page, so one schedule costs O(pages^2) (2,048 pages about "
                                          "20 s, 65,536 never finish)")
        ptes_per_table = self.integer("setup.ptes_per_table",
                                      setup_doc.get("ptes_per_table", _SETUP_DEFAULTS["ptes_per_table"]), 1,
                                      MAX_PTES_PER_TABLE, why=" (PTRS_PER_PTE is at most 8192 on any architecture, "
                                                              "with 64K pages)")
        flags = {k: self.boolean(f"setup.{k}", setup_doc[k]) for k in _SETUP_BOOLS if k in setup_doc}
        mapped = flags.get("mapped", _SETUP_DEFAULTS["mapped"])
        anon = flags.get("anon", _SETUP_DEFAULTS["anon"])
        self.check_setup_flags(flags, mapped, anon)
        threads = self.build_threads(doc, pages, anon)
        if pages * len(threads) > MAX_PAGE_THREADS:
            raise self.err("setup.pages", f"{pages} pages with {len(threads)} threads (each a CPU whose TLB spans "
                                          f"every page): expected pages x threads <= {MAX_PAGE_THREADS}, got "
                                          f"{pages * len(threads)}")
        warm_tlb = self.build_warm_tlb(setup_doc.get("warm_tlb", []), threads, mapped)
        self.check_counters(threads, warm_tlb)
        setup = Setup(pages=pages, ptes_per_table=ptes_per_table, warm_tlb=warm_tlb, **flags)
        expect = self.build_expect(doc.get("expect", []), threads, pages, anon)
        self.check_params_used()
        return Scenario(name=name, description=description, setup=setup, threads=threads, config=config,
                        params=dict(self.params), source=self.text, expect=expect)

    def check_setup_flags(self, flags: dict[str, bool], mapped: bool, anon: bool) -> None:
        """Setup keys the machine would ignore are errors: a kernel engineer who writes them means something the
        model would silently not do."""
        if anon and "write_notify" in flags:
            raise self.err("setup.write_notify", "write notification (->page_mkwrite, dirty accounting) is a shared "
                                                 "file mapping's; anonymous memory (setup.anon = true) has none: "
                                                 "expected no write_notify key with anon = true")
        if not mapped and flags.get("dirty") is True:
            raise self.err("setup.dirty", "dirty = true describes mapped pages (PTE D and PG_dirty from an earlier "
                                          "store through the mapping); with mapped = false no page starts dirty: "
                                          "expected mapped = true, or no dirty key")

    def build_expect(self, value: Any, threads: tuple[Thread, ...], pages: int, anon: bool) -> tuple[Expect, ...]:
        """The [[expect]] entries (see the module docstring)."""
        if not isinstance(value, list):
            raise self.err("expect", f"expected an array of tables ([[expect]]), got {_show(value)}")
        names = [t.name for t in threads]
        out: list[Expect] = []
        for n, entry in enumerate(value):
            key = f"expect[{n}]"
            entry = self.table(key, entry, _EXPECT_KEYS)
            for k in _EXPECT_KEYS:
                if k not in entry:
                    raise self.err(f"{key}.{k}", "missing (an expectation needs kind, thread and page)")
            kind = self.string(f"{key}.kind", entry["kind"])
            if kind not in EXPECT_KINDS:
                raise self.err(f"{key}.kind", f"expected one of {', '.join(EXPECT_KINDS)}, got {kind!r}"
                                              + did_you_mean(kind, EXPECT_KINDS))
            if anon:
                raise self.err(f"{key}.kind", f"{kind} needs a file, and setup.anon = true has none")
            thread = self.string(f"{key}.thread", entry["thread"])
            if thread not in names:
                raise self.err(f"{key}.thread", f"expected a thread name ({', '.join(names)}), got {thread!r}"
                                                + did_you_mean(thread, names))
            page = self.integer(f"{key}.page", entry["page"], 0, pages - 1)
            stored = sorted(_stored_pages(threads[names.index(thread)]))
            if page not in stored:
                raise self.err(f"{key}.page", f"thread {thread!r} never stores to page {page} (its store and "
                                              f"counter ops cover {stored or 'no page'}), so the check could "
                                              "never fail: expected a page it stores to")
            out.append(Expect(kind, thread, page))
        return tuple(out)

    def check_params_used(self) -> None:
        """A param no key refers to is a mistake (``passes = 3`` without ``repeat = "passes"``): the scenario
        would run with the value written elsewhere, and ``--param passes=5`` would change nothing."""
        for k in self.params:
            if k not in self.used_params:
                raise self.err(f"params.{k}", "declared but no key uses it: expected it named by a key that takes "
                                              f"an integer (e.g. repeat = \"{k}\"), or removed")

    def build_params(self, value: Any, overrides: dict[str, int] | None) -> dict[str, int]:
        if not isinstance(value, dict):
            raise self.err("params", f"expected a table of integers, got {_show(value)}")
        params: dict[str, int] = {}
        for k, v in value.items():
            key = f"params.{k}"
            if not _PARAM_RE.fullmatch(k):
                raise self.err(key, "expected a param name of letters, digits and '_' (not starting with a digit)")
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise self.err(key, f"expected an integer >= 0, got {_show(v)}")
            if v > MAX_PARAM:
                raise self.err(key, f"expected an integer <= {MAX_PARAM}, got {v}")
            params[k] = v
        for k, v in (overrides or {}).items():
            key = f"params.{k}"
            if k not in params:
                known = ", ".join(sorted(params)) or "none"
                raise self.err(key, f"unknown param {k!r}{did_you_mean(k, params)} (this scenario's params: "
                                    f"{known})")
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise self.err(key, f"expected an integer >= 0 from the override, got {_show(v)}")
            if v > MAX_PARAM:
                raise self.err(key, f"expected an integer <= {MAX_PARAM} from the override, got {v}")
            params[k] = v
        return params

    def build_config(self, value: Any) -> dict[str, object]:
        config = dict(self.table("config", value, _CONFIG_KEYS))
        try:
            Config(**config)
        except ConfigError as exc:
            message = str(exc)
            head, _, rest = message.partition(": ")
            if head in _CONFIG_KEYS and rest:
                hint = did_you_mean(config.get(head), _CONFIG_CHOICES.get(head, ()))
                raise self.err(f"config.{head}", rest + hint) from None
            raise self.err("config", message) from None
        except TypeError as exc:  # defensive: Config checks its own types, but never let one through as a crash
            raise self.err("config", str(exc)) from None
        return config

    def build_threads(self, doc: dict[str, Any], pages: int, anon: bool) -> tuple[Thread, ...]:
        if "threads" not in doc:
            raise self.err("threads", "missing: expected at least one [[threads]] table")
        value = doc["threads"]
        if not isinstance(value, list):
            raise self.err("threads", f"expected an array of tables ([[threads]]), got {_show(value)}")
        if not value:
            raise self.err("threads", "expected at least one thread, got none")
        threads: list[Thread] = []
        origin: dict[str, str] = {}  # expanded thread name -> the threads[i] key it came from
        total = 0  # unrolled operations of the threads so far
        for i, tdoc in enumerate(value):
            key = f"threads[{i}]"
            tdoc = self.table(key, tdoc, _THREAD_KEYS)
            if "name" not in tdoc:
                raise self.err(f"{key}.name", "missing: every thread needs a name")
            name = self.string(f"{key}.name", tdoc["name"])
            if not _THREAD_NAME_RE.fullmatch(name) or len(name) > MAX_THREAD_NAME:
                raise self.err(f"{key}.name", "expected letters, digits, '_' or '-', starting with a letter or "
                                              f"'_', at most {MAX_THREAD_NAME} characters, got {name!r:.80}"
                                              + (f" ({len(name):,} characters)" if len(name) > MAX_THREAD_NAME else ""))
            count = self.integer(f"{key}.count", tdoc.get("count", 1), 1, MAX_THREADS)
            if "program" not in tdoc:
                raise self.err(f"{key}.program", "missing: expected a list of operations")
            ops = self.build_ops(f"{key}.program", tdoc["program"], pages, anon, 0)
            total += count * sum(_flat_len(op) for op in ops)
            if total > MAX_OPS_TOTAL:
                raise self.err(f"{key}.count" if count > 1 else f"{key}.program",
                               f"the threads so far unroll to {total} operations in all; at most {MAX_OPS_TOTAL} "
                               "are allowed")
            names = [name] if count == 1 else [f"{name}{c}" for c in range(count)]
            for n in names:
                if n in origin:
                    raise self.err(f"{key}.name", f"duplicate thread name {n!r} (also from {origin[n]})")
                origin[n] = key
                threads.append(Thread(n, ops))
            self.bases.setdefault(name, []).extend(names)
            if len(threads) > MAX_THREADS:
                raise self.err(f"{key}.count", f"expected at most {MAX_THREADS} threads in all, got {len(threads)}")
        return tuple(threads)

    def check_counters(self, threads: tuple[Thread, ...], warm_tlb: tuple[str, ...]) -> None:
        """A counter without refault runs while its CPU's TLB holds the page's translation: it must start with
        one, and unless it has a bound (max) another thread must zap the page (that zap's flush is what ends the
        loop). A refaulting counter faults the page in itself and always has a bound."""
        zappers: dict[int, set[int]] = {}  # page -> the threads that zap it (computed once: 1,000 counting
        for i, t in enumerate(threads):    # threads each looking through every program took minutes)
            for op in flatten(t.ops):
                if op.kind in UNMAPPING_OPS:
                    for p in op.pages:
                        zappers.setdefault(p, set()).add(i)
        for i, t in enumerate(threads):
            counters = [op for op in flatten(t.ops) if op.kind == "counter" and not op.refault]
            for p in {op.pages[0] for op in counters}:
                where = f"threads[{i}].program"
                if t.name not in warm_tlb:
                    raise self.err(where, f"thread {t.name!r} runs a counter on page {p}, which only counts "
                                          "through a cached translation: expected it in setup.warm_tlb (or "
                                          "refault = true)")
                if all(op.max is not None for op in counters if op.pages[0] == p):
                    continue  # bounded: it ends by itself
                if not zappers.get(p, set()) - {i}:
                    raise self.err(where, f"thread {t.name!r} runs a counter on page {p}, but no other thread "
                                          f"zaps page {p} (madvise_dontneed, munmap or mmap_fixed), so the loop "
                                          "would never end")

    def build_warm_tlb(self, value: Any, threads: tuple[Thread, ...], mapped: bool) -> tuple[str, ...]:
        if not isinstance(value, list):
            raise self.err("setup.warm_tlb", f"expected a list of thread names, got {_show(value)}")
        if value and not mapped:
            raise self.err("setup.warm_tlb", "needs setup.mapped = true (a TLB entry is only ever filled from "
                                             "a present PTE)")
        names = {t.name for t in threads}
        wanted: set[str] = set()
        for j, n in enumerate(value):
            key = f"setup.warm_tlb[{j}]"
            if not isinstance(n, str):
                raise self.err(key, f"expected a thread name, got {_show(n)}")
            if n in self.bases:
                wanted.update(self.bases[n])
            elif n in names:
                wanted.add(n)
            else:
                known = sorted(set(self.bases) | names)
                raise self.err(key, f"unknown thread {n!r}{did_you_mean(n, known)} (threads: {', '.join(known)})")
        return tuple(t.name for t in threads if t.name in wanted)


def _stored_pages(thread: Thread) -> set[int]:
    """The addresses a thread's store and counter operations write (what file_holds_last_store can judge)."""
    return {p for op in flatten(thread.ops) if op.kind in ("store", "counter") for p in op.pages}


def _flat_len(op: Op) -> int:
    if op.kind == "loop":
        return op.repeat * sum(_flat_len(b) for b in op.body)
    if op.kind in PAGE_REQUIRED_OPS:
        return op.repeat * len(op.pages)
    return op.repeat
