"""The scenario loader: library files, the TOML contract, and errors that name the file and the key."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cli import main as cli
from kernel_model.config import Config
from kernel_model.program import OP_KINDS, Op, Scenario, flatten
from scenarios.loader import (LIBRARY_DIR, MAX_LOOP_DEPTH, ScenarioError, list_scenarios, load_scenario, parse_params)

LIBRARY = ("anon_pages", "fault_vs_evict", "flush_after_unlock", "ladder", "madv_dontneed", "mkclean_first",
           "mmap_fixed_remap", "mprotect_reclaim", "mremap_truncate", "mremap_writeback", "munmap", "nadav_poc", "parallel_dontneed",
           "scale_writers", "scale_zap", "up_fast_mode", "writable_clean", "zap_many_pages")

# Overrides that keep each library scenario meaningful (and small) but differ from its defaults.
OVERRIDES = {
    "anon_pages": {"stores": 3},
    "fault_vs_evict": {"evicts": 2},
    "flush_after_unlock": {"passes": 2},
    "ladder": {"pages": 2, "writers": 2, "stores": 1, "passes": 2},
    "madv_dontneed": {"passes": 2},
    "mkclean_first": {"stores": 2, "passes": 3},
    "mmap_fixed_remap": {"stores": 1, "passes": 2},
    "mprotect_reclaim": {"stores": 2},
    "mremap_truncate": {"loads": 1},
    "mremap_writeback": {"passes": 2},
    "munmap": {"stores": 1, "passes": 2},
    "nadav_poc": {"pages": 3, "incs": 1, "loops": 2},
    "parallel_dontneed": {"pages": 3},
    "scale_writers": {"writers": 2, "pages": 16, "ptes_per_table": 8, "stores": 1},
    "scale_zap": {"writers": 2, "pages": 16, "ptes_per_table": 8, "stores": 1},
    "up_fast_mode": {"stores": 3},
    "writable_clean": {"stores": 1, "passes": 2},
    "zap_many_pages": {"pages": 600},
}


# --- the library ------------------------------------------------------------------------------------------


def test_library_is_complete_and_sorted() -> None:
    listed = list_scenarios()
    assert [name for name, _, _ in listed] == list(LIBRARY)
    assert sorted(p.stem for p in LIBRARY_DIR.glob("*.toml")) == list(LIBRARY)
    for name, description, params in listed:
        assert description and "\n" not in description, name
        assert all(isinstance(v, int) for v in params.values())


@pytest.mark.parametrize("name", LIBRARY)
def test_library_loads_with_defaults(name: str) -> None:
    s = load_scenario(name)
    assert isinstance(s, Scenario)
    assert s.name == name
    assert s.source == (LIBRARY_DIR / f"{name}.toml").read_text()
    assert s.threads and all(t.ops for t in s.threads)
    Config(**s.config)
    for t in s.threads:
        for op in flatten(t.ops):
            assert op.kind in OP_KINDS and op.kind != "loop"
            assert all(0 <= p < s.setup.pages for p in op.pages)
    assert set(s.setup.warm_tlb) <= {t.name for t in s.threads}


@pytest.mark.parametrize("name", LIBRARY)
def test_library_loads_with_overrides(name: str) -> None:
    params = OVERRIDES[name]
    s = load_scenario(name, params)
    assert s.params == {**load_scenario(name).params, **params}
    if "pages" in params:
        assert s.setup.pages == params["pages"]


def test_madv_dontneed_shape() -> None:
    s = load_scenario("madv_dontneed")
    assert [t.name for t in s.threads] == ["writer", "zapper", "writeback"]
    assert s.params == {"passes": 1}
    assert s.setup.pages == 1 and s.setup.mapped and not s.setup.anon
    assert s.setup.warm_tlb == ("writer",)
    writer, zapper, writeback = (flatten(t.ops) for t in s.threads)
    assert writer == [Op("counter", (0,))]
    assert zapper == [Op("madvise_dontneed", (0,))]
    assert writeback == [Op("msync", (0,))]


def test_param_override_changes_flatten() -> None:
    s = load_scenario("munmap", {"stores": 5, "passes": 3})
    assert flatten(s.threads[0].ops) == [Op("store", (0,))] * 5
    assert flatten(s.threads[2].ops) == [Op("msync", (0,))] * 3


def test_ladder_expands_writers() -> None:
    s = load_scenario("ladder", {"writers": 2, "pages": 2})
    assert [t.name for t in s.threads] == ["writer0", "writer1", "zapper", "writeback"]
    assert s.setup.warm_tlb == ("writer0", "writer1")
    # "store to all pages, twice": one store per page, in page order, for each repetition
    assert flatten(s.threads[1].ops) == [Op("store", (p,)) for p in (0, 1, 0, 1)]
    assert flatten(s.threads[2].ops) == [Op("madvise_dontneed", (0, 1))]
    assert load_scenario("ladder").threads[0].name == "writer"  # count = 1 keeps the plain name


def test_nadav_poc_loop_and_size() -> None:
    s = load_scenario("nadav_poc", {"loops": 2})
    syncer = s.threads[s.thread_index("syncer")]
    assert syncer.ops[0].kind == "loop" and syncer.ops[0].repeat == 2
    assert [op.kind for op in flatten(syncer.ops)] == ["msync", "evict"] * 2
    counter = flatten(load_scenario("nadav_poc", {"incs": 5}).threads[0].ops)
    assert counter == [Op("counter", (0,), refault=True, max=5)]


def test_scale_writers_has_several_ptls() -> None:
    s = load_scenario("scale_writers")
    assert s.setup.pages // s.setup.ptes_per_table >= 2
    assert sum(t.name.startswith("writer") for t in s.threads) == 4


def test_loads_user_file_by_path(tmp_path: Path) -> None:
    path = tmp_path / "mine.toml"
    path.write_text('[[threads]]\nname = "a"\nprogram = [{ op = "store", pages = [0] }]\n')
    s = load_scenario(str(path))
    assert s.name == "mine" and s.description == "" and s.params == {} and s.config == {}
    assert s.setup.pages == 1 and s.setup.ptes_per_table == 512 and s.setup.mapped and s.setup.warm_tlb == ()


def test_unmapped_store_is_fine(tmp_path: Path) -> None:
    path = tmp_path / "unmapped.toml"
    path.write_text('[setup]\nmapped = false\nanon = false\n'
                    '[[threads]]\nname = "a"\nprogram = [{ op = "store", pages = [0] }, { op = "msync" }]\n')
    assert not load_scenario(str(path)).setup.mapped


# --- bad documents ----------------------------------------------------------------------------------------

GOOD_THREAD = '[[threads]]\nname = "w"\nprogram = [{ op = "store", pages = [0] }]\n'

BAD = [
    # (document, the key the message must name, a fragment of what was expected)
    ('name = "x"\n[[threads]\n', "line 2", "invalid TOML"),
    ("", "threads", "missing"),
    ("threads = []\n", "threads", "at least one thread"),
    ("threads = 3\n", "threads", "array of tables"),
    ('bogus = 1\n' + GOOD_THREAD, "bogus", "unknown key"),
    ('name = 3\n' + GOOD_THREAD, "name", "expected a string"),
    ('description = "two\\nlines"\n' + GOOD_THREAD, "description", "one line"),
    ('[params]\nstores = -1\n' + GOOD_THREAD, "params.stores", ">= 0"),
    # An explicit anon = false in an anonymous setup used to map anonymous memory silently.
    ('[setup]\nanon = true\n[[threads]]\nname = "m"\nprogram = [{ op = "mmap_fixed", pages = [0], anon = false }]\n',
     "threads[0].program[0].anon", "has no file"),
    # Declared and never used: the scenario ran with the value written elsewhere and --param stores=5 changed
    # nothing (it used to load silently).
    ('[params]\nstores = 3\n' + GOOD_THREAD, "params.stores", "no key uses it"),
    ('[params]\nstores = 1.5\n' + GOOD_THREAD, "params.stores", "integer"),
    ('[params]\nstores = true\n' + GOOD_THREAD, "params.stores", "integer"),
    ('[setup]\npages = 0\n' + GOOD_THREAD, "setup.pages", ">= 1"),
    ('[setup]\npages = "nope"\n' + GOOD_THREAD, "setup.pages", "param name"),
    ('[params]\nn = 0\n[setup]\npages = "n"\n' + GOOD_THREAD, "setup.pages", "param n = 0"),
    ('[setup]\nptes_per_table = 0\n' + GOOD_THREAD, "setup.ptes_per_table", ">= 1"),
    ('[setup]\nmapped = "yes"\n' + GOOD_THREAD, "setup.mapped", "true or false"),
    ('[setup]\nmapd = true\n' + GOOD_THREAD, "setup.mapd", "unknown key"),
    ('[setup]\nwarm_tlb = ["ghost"]\n' + GOOD_THREAD, "setup.warm_tlb[0]", "unknown thread 'ghost'"),
    ('[setup]\nwarm_tlb = "w"\n' + GOOD_THREAD, "setup.warm_tlb", "list of thread names"),
    ('[setup]\nmapped = false\nwarm_tlb = ["w"]\n' + GOOD_THREAD, "setup.warm_tlb", "mapped = true"),
    ('[config]\nordering = "lazy"\n' + GOOD_THREAD, "config.ordering", "expected one of eager, delayed"),
    ('[config]\nmutant = "nope"\n' + GOOD_THREAD, "config.mutant", "expected one of"),
    ('[config]\nmax_gather_batch = 0\n' + GOOD_THREAD, "config.max_gather_batch", "got 0"),
    ('[config]\ncolour = "red"\n' + GOOD_THREAD, "config.colour", "unknown key"),
    ('[[threads]]\nprogram = [{ op = "store", pages = [0] }]\n', "threads[0].name", "missing"),
    ('[[threads]]\nname = "a b"\nprogram = [{ op = "store", pages = [0] }]\n', "threads[0].name", "letters"),
    ('[[threads]]\nname = "w"\n', "threads[0].program", "missing"),
    ('[[threads]]\nname = "w"\nprogram = []\n', "threads[0].program", "at least one operation"),
    ('[[threads]]\nname = "w"\ncount = 0\nprogram = [{ op = "store", pages = [0] }]\n', "threads[0].count", ">= 1"),
    ('[[threads]]\nname = "w"\ncpu = 1\nprogram = [{ op = "store", pages = [0] }]\n', "threads[0].cpu", "unknown key"),
    (GOOD_THREAD + GOOD_THREAD, "threads[1].name", "duplicate thread name 'w'"),
    (GOOD_THREAD + '[[threads]]\nname = "x"\nprogram = [{ op = "stor", pages = [0] }]\n',
     "threads[1].program[0].op", "expected one of store, load, counter, madvise_dontneed"),
    ('[[threads]]\nname = "w"\nprogram = [{ pages = [0] }]\n', "threads[0].program[0].op", "missing"),
    ('[[threads]]\nname = "w"\nprogram = [{ op = 7 }]\n', "threads[0].program[0].op", "expected one of"),
    ('[[threads]]\nname = "w"\nprogram = ["store"]\n', "threads[0].program[0]", "operation table"),
    ('[[threads]]\nname = "w"\nprogram = [{ op = "store" }]\n', "threads[0].program[0].pages", "needs pages"),
    ('[[threads]]\nname = "w"\nprogram = [{ op = "store", pages = [1] }]\n', "threads[0].program[0].pages[0]",
     "out of range"),
    ('[[threads]]\nname = "w"\nprogram = [{ op = "load", pages = [-1] }]\n', "threads[0].program[0].pages[0]",
     "out of range"),
    ('[[threads]]\nname = "w"\nprogram = [{ op = "store", pages = [] }]\n', "threads[0].program[0].pages",
     "at least one page"),
    ('[[threads]]\nname = "w"\nprogram = [{ op = "store", pages = "some" }]\n', "threads[0].program[0].pages",
     '"all"'),
    ('[setup]\npages = 2\n[[threads]]\nname = "w"\nprogram = [{ op = "counter", pages = [0, 1] }]\n',
     "threads[0].program[0].pages", "exactly one page"),
    ('[[threads]]\nname = "w"\nprogram = [{ op = "counter", pages = [0] }]\n', "threads[0].program",
     "expected it in setup.warm_tlb"),
    ('[setup]\nwarm_tlb = ["w"]\n[[threads]]\nname = "w"\nprogram = [{ op = "counter", pages = [0] }]\n'
     '[[threads]]\nname = "s"\nprogram = [{ op = "msync" }]\n', "threads[0].program", "would never end"),
    ('[[threads]]\nname = "w"\nprogram = [{ op = "counter", pages = [0], refault = "yes" }]\n',
     "threads[0].program[0].refault", "true or false"),
    ('[[threads]]\nname = "w"\nprogram = [{ op = "counter", pages = [0], refault = true, max = 0 }]\n',
     "threads[0].program[0].max", ">= 1"),
    ('[[threads]]\nname = "w"\nprogram = [{ op = "counter", pages = [0], refault = true, max = "lots" }]\n',
     "threads[0].program[0].max", "param name"),
    ('[[threads]]\nname = "w"\nprogram = [{ op = "store", pages = [0], max = 3 }]\n',
     "threads[0].program[0].max", "only counter takes refault and max"),
    ('[setup]\nwarm_tlb = ["w"]\n[[threads]]\nname = "w"\nprogram = [{ op = "loop", times = 2, body = '
     '[{ op = "counter", pages = [0], max = 3 }] }]\n', "threads[0].program[0].body[0].op", "refault = true"),
    ('[setup]\nwarm_tlb = ["w"]\n[[threads]]\nname = "w"\nprogram = [{ op = "counter", pages = [0], max = 3, '
     'repeat = 2 }]\n', "threads[0].program[0].repeat", "refault = true"),
    ('[setup]\npages = 3\n[[threads]]\nname = "z"\nprogram = [{ op = "munmap", pages = [0, 2] }]\n',
     "threads[0].program[0].pages", "contiguous"),
    ('[setup]\npages = 3\n[[threads]]\nname = "z"\nprogram = [{ op = "madvise_dontneed", pages = [1, 0] }]\n',
     "threads[0].program[0].pages", "contiguous"),
    ('[setup]\npages = 3\n[[threads]]\nname = "z"\nprogram = [{ op = "msync", pages = [1, 1] }]\n',
     "threads[0].program[0].pages", "distinct"),
    ('[[threads]]\nname = "w"\nprogram = [{ op = "store", pages = [0], repeat = 0 }]\n',
     "threads[0].program[0].repeat", ">= 1"),
    ('[[threads]]\nname = "w"\nprogram = [{ op = "store", pages = [0], repeat = "many" }]\n',
     "threads[0].program[0].repeat", "param name"),
    ('[[threads]]\nname = "w"\nprogram = [{ op = "store", pages = [0], times = 2 }]\n',
     "threads[0].program[0].times", "only loops"),
    ('[[threads]]\nname = "w"\nprogram = [{ op = "loop", times = 2 }]\n', "threads[0].program[0].body", "missing"),
    ('[[threads]]\nname = "w"\nprogram = [{ op = "loop", times = 2, body = [] }]\n',
     "threads[0].program[0].body", "at least one operation"),
    ('[[threads]]\nname = "w"\nprogram = [{ op = "loop", body = [{ op = "msync" }] }]\n',
     "threads[0].program[0].times", "missing"),
    ('[[threads]]\nname = "w"\nprogram = [{ op = "loop", times = 1, repeat = 2, body = [{ op = "msync" }] }]\n',
     "threads[0].program[0].repeat", "unknown key"),
    ('[[threads]]\nname = "w"\nprogram = [{ op = "loop", times = 1, body = [{ op = "msync", x = 1 }] }]\n',
     "threads[0].program[0].body[0].x", "unknown key"),
    ('[setup]\nanon = true\n[[threads]]\nname = "w"\nprogram = [{ op = "msync" }]\n',
     "threads[0].program[0].op", "backing file"),
    ('[setup]\nanon = true\n[[threads]]\nname = "w"\n'
     'program = [{ op = "loop", times = 1, body = [{ op = "evict" }] }]\n',
     "threads[0].program[0].body[0].op", "backing file"),
    ('[setup]\npages = 100000\n' + GOOD_THREAD, "setup.pages", "<= 2048"),
    ('[[threads]]\nname = "w"\nprogram = [{ op = "store", pages = [0], repeat = 9000000000 }]\n',
     "threads[0].program", "unrolls to"),
    # Within every per-thread bound, too many in all (1,022 such writers used to run out of memory silently).
    ('[[threads]]\nname = "w"\ncount = 3\nprogram = [{ op = "store", pages = [0], repeat = 400000 }]\n',
     "threads[0].count", "1200000 operations in all"),
    ('[[threads]]\nname = "a"\nprogram = [{ op = "store", pages = [0], repeat = 600000 }]\n'
     '[[threads]]\nname = "b"\nprogram = [{ op = "store", pages = [0], repeat = 600000 }]\n',
     "threads[1].program", "at most 1000000"),
    # Setup keys the machine would ignore (issue 17, author12).
    ('[setup]\nanon = true\nwrite_notify = false\n[[threads]]\nname = "w"\nprogram = [{ op = "store", pages = [0] }]\n',
     "setup.write_notify", "anonymous memory (setup.anon = true) has none"),
    ('[setup]\nmapped = false\ndirty = true\n' + GOOD_THREAD, "setup.dirty", "with mapped = false no page starts dirty"),
    # Every bound held alone; together, each CPU's TLB over every page ate the machine's memory.
    ('[setup]\npages = 2048\n[[threads]]\nname = "w"\ncount = 129\nprogram = [{ op = "msync", pages = [0] }]\n',
     "setup.pages", "pages x threads <= 262144, got 264192"),
]


@pytest.mark.parametrize(("text", "key", "expected"), BAD, ids=[b[1] + ":" + b[2][:20] for b in BAD])
def test_bad_documents(tmp_path: Path, text: str, key: str, expected: str) -> None:
    path = tmp_path / "bad_doc.toml"
    path.write_text(text)
    with pytest.raises(ScenarioError) as info:
        load_scenario(str(path))
    message = str(info.value)
    assert message.startswith(str(path) + ": "), message
    assert key in message and expected in message, message


def test_loop_nesting_is_bounded(tmp_path: Path) -> None:
    def nested(depth: int) -> str:
        op = '{ op = "msync" }'
        for _ in range(depth):
            op = '{ op = "loop", times = 1, body = [' + op + "] }"
        return '[[threads]]\nname = "w"\nprogram = [' + op + "]\n"

    path = tmp_path / "deep.toml"
    path.write_text(nested(MAX_LOOP_DEPTH))
    assert [op.kind for op in flatten(load_scenario(str(path)).threads[0].ops)] == ["msync"]
    path.write_text(nested(MAX_LOOP_DEPTH + 1))
    with pytest.raises(ScenarioError, match="nested too deeply"):
        load_scenario(str(path))
    path.write_text(nested(400))  # tomllib's own limit
    with pytest.raises(ScenarioError, match="nested too deeply"):
        load_scenario(str(path))


def test_error_carries_file_and_key(tmp_path: Path) -> None:
    path = tmp_path / "x.toml"
    path.write_text(GOOD_THREAD.replace('"store"', '"stor"'))
    with pytest.raises(ScenarioError) as info:
        load_scenario(str(path))
    assert info.value.file == str(path) and info.value.key == "threads[0].program[0].op"
    assert "got 'stor'" in str(info.value)


def test_library_name_must_match_stem(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("scenarios.loader.LIBRARY_DIR", tmp_path)
    (tmp_path / "foo.toml").write_text('name = "bar"\n' + GOOD_THREAD)
    with pytest.raises(ScenarioError, match=r"^library:foo: name: expected 'foo'"):
        load_scenario("foo")


def test_unknown_param_override_names_it_and_the_known_ones() -> None:
    with pytest.raises(ScenarioError) as info:
        load_scenario("madv_dontneed", {"storez": 3})
    message = str(info.value)
    assert message.startswith("library:madv_dontneed: params.storez")
    assert "(this scenario's params: passes)" in message


@pytest.mark.parametrize("params", [{"stores": -1}, {"stores": True}, {"stores": "2"}])
def test_bad_param_override_values(params: dict) -> None:
    with pytest.raises(ScenarioError, match="params.stores"):
        load_scenario("madv_dontneed", params)


def test_override_out_of_range_names_the_key() -> None:
    with pytest.raises(ScenarioError, match=r"threads\[1\]\.program\[0\]\.pages\[0\]: page 1 is out of range"):
        load_scenario("nadav_poc", {"pages": 1})
    with pytest.raises(ScenarioError, match=r"threads\[0\]\.count: expected an integer >= 1, got 0 \(param writers"):
        load_scenario("ladder", {"writers": 0})


def test_missing_and_unknown_sources(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="no library scenario or file"):
        load_scenario("no_such_scenario")
    with pytest.raises(ScenarioError, match="cannot read"):
        load_scenario(str(tmp_path / "absent.toml"))
    with pytest.raises(ScenarioError, match="is a directory; expected a regular file"):
        load_scenario(str(tmp_path) + "/")
    bad = tmp_path / "binary.toml"
    bad.write_bytes(b"\xff\xfe\x00name")
    with pytest.raises(ScenarioError, match="UTF-8"):
        load_scenario(str(bad))


def test_parse_params() -> None:
    assert parse_params([]) == {}
    assert parse_params(["pages=2", " stores = 3 "]) == {"pages": 2, "stores": 3}
    for bad in ["pages", "=2", "pages=", "pages=two", "pages=1.5", "2x=1", "pages=1=2"]:
        with pytest.raises(ScenarioError, match="--param"):
            parse_params([bad])
    with pytest.raises(ScenarioError, match="twice"):
        parse_params(["pages=1", "pages=2"])


# --- the command line -------------------------------------------------------------------------------------


def test_cli_scenarios_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["scenarios", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [item["name"] for item in listed] == list(LIBRARY)
    assert all(set(item) == {"name", "description", "params"} for item in listed)
    assert listed[LIBRARY.index("madv_dontneed")]["params"] == {"passes": 1}


def test_cli_scenarios_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["scenarios"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in LIBRARY)


# --- never anything but ScenarioError ---------------------------------------------------------------------


def _toml_string(text: str) -> str:
    # Basic string: escape quotes, backslashes and control characters; everything else is literal UTF-8.
    return '"' + "".join(c if c not in '"\\' and c >= " " and c != "\x7f" else f"\\u{ord(c):04x}"
                         for c in text) + '"'


def _toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else _toml_string(key)


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)  # 1.5, 1e+16, inf, -inf are all TOML floats
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    assert isinstance(value, dict)
    return "{ " + ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items()) + " }"


def _toml_document(doc: dict[str, object]) -> str:
    return "".join(f"{_toml_key(k)} = {_toml_value(v)}\n" for k, v in doc.items())


_WORDS = st.sampled_from(["name", "description", "params", "setup", "config", "threads", "pages", "count",
                          "program", "op", "repeat", "times", "body", "warm_tlb", "mapped", "anon",
                          "ptes_per_table", "ordering", "mutant", "all", "w", "store", "load", "loop", "msync",
                          "evict", "munmap", "madvise_dontneed", "mmap_fixed", "eager", "delayed"])
_KEYS = _WORDS | st.text(max_size=6)
_SCALARS = (st.booleans() | st.integers(min_value=-3, max_value=5) | st.integers(min_value=-2**63, max_value=2**63 - 1)
            | st.floats(allow_nan=False) | _WORDS | st.text(max_size=8))
_JUNK = st.recursive(_SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_KEYS, inner, max_size=4),
                     max_leaves=20)


def _mostly(valid: st.SearchStrategy) -> st.SearchStrategy:
    """Usually a valid value, sometimes anything: most documents get deep into validation, some load."""
    return st.integers(0, 9).flatmap(lambda i: _JUNK if i == 0 else valid)


_PARAM_NAMES = st.sampled_from(["n", "pages", "stores"])
_THREAD_NAMES = st.sampled_from(["a", "b", "w"])
_INT_OR_PARAM = _mostly(st.integers(1, 3) | _PARAM_NAMES)
_PAGES = _mostly(st.just("all") | st.lists(st.integers(-1, 3), max_size=3))


def _ops(depth: int) -> st.SearchStrategy:
    plain = st.fixed_dictionaries({"op": _mostly(st.sampled_from([k for k in OP_KINDS if k != "loop"])),
                                   "pages": _PAGES}, optional={"repeat": _INT_OR_PARAM})
    if depth == 0:
        return _mostly(plain)
    loop = st.fixed_dictionaries({"op": st.just("loop"), "times": _INT_OR_PARAM,
                                  "body": _mostly(st.lists(_ops(depth - 1), min_size=1, max_size=3))})
    return _mostly(plain | loop)


_THREAD = _mostly(st.fixed_dictionaries({"name": _mostly(_THREAD_NAMES),
                                         "program": _mostly(st.lists(_ops(2), min_size=1, max_size=3))},
                                        optional={"count": _INT_OR_PARAM}))
_DOCS = st.fixed_dictionaries(
    {"threads": _mostly(st.lists(_THREAD, min_size=1, max_size=3))},
    optional={"name": _mostly(_WORDS), "description": _mostly(st.text(max_size=10)),
              "params": _mostly(st.fixed_dictionaries({}, optional={
                  k: _mostly(st.integers(1, 3)) for k in ("n", "pages", "stores")})),
              "setup": _mostly(st.fixed_dictionaries({}, optional={
                  "pages": _INT_OR_PARAM, "ptes_per_table": _INT_OR_PARAM, "mapped": _mostly(st.booleans()),
                  "anon": _mostly(st.booleans()), "warm_tlb": _mostly(st.lists(_THREAD_NAMES, max_size=2))})),
              "config": _mostly(st.fixed_dictionaries({}, optional={
                  "ordering": _mostly(st.sampled_from(["eager", "delayed"])),
                  "arch": _mostly(st.sampled_from(["smp", "up", "s390"])),
                  "mmu_gather_bundle": _mostly(st.integers(1, 8))}))},
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(doc=_DOCS | st.dictionaries(_KEYS, _JUNK, max_size=5), noise=st.binary(max_size=40),
       mode=st.sampled_from(["doc", "bytes", "doc+bytes"]),
       params=st.dictionaries(_WORDS, st.integers(-1, 3), max_size=2))
def test_loader_only_raises_scenario_error(tmp_path: Path, doc: dict, noise: bytes, mode: str,
                                           params: dict[str, int]) -> None:
    text = _toml_document(doc).encode()
    data = {"doc": text, "bytes": noise, "doc+bytes": text + noise}[mode]
    path = tmp_path / "fuzz.toml"
    path.write_bytes(data)
    try:
        result = load_scenario(str(path), params or None)
    except ScenarioError as exc:
        assert str(exc).startswith(str(path) + ": ")
    else:
        assert isinstance(result, Scenario) and result.threads


def test_setup_booleans_follow_the_model(tmp_path: Path) -> None:
    """Every boolean field of Setup is a [setup] key; each can be flipped from its default."""
    from dataclasses import fields

    from kernel_model.program import Setup

    defaults = {f.name: f.default for f in fields(Setup) if isinstance(f.default, bool)}
    assert {"mapped", "anon"} <= set(defaults)
    flipped = {k: not v for k, v in defaults.items()}
    flipped["anon"] = False  # keep the file ops of GOOD_THREAD legal
    path = tmp_path / "flags.toml"
    path.write_text("[setup]\n" + "".join(f"{k} = {str(v).lower()}\n" for k, v in flipped.items()) + GOOD_THREAD)
    setup = load_scenario(str(path)).setup
    assert {k: getattr(setup, k) for k in defaults} == flipped
    path.write_text('[setup]\nmapped = 1\n' + GOOD_THREAD)
    with pytest.raises(ScenarioError, match=r"setup\.mapped: expected true or false"):
        load_scenario(str(path))
