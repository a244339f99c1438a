"""Bad input gets one clear message, exit status 2, no traceback; loaders never fail any other way."""

from __future__ import annotations

import msgpack
import pytest
from cli_run import run_cli
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cli.main import main
from logs.eventlog import LogError, read_log
from logs.schedule_file import VERSION, ScheduleError, read_schedule




def test_unknown_scenario_names_it(capsys):
    rc, _, err = run_cli(capsys, "explore", "no_such_scenario")
    assert rc == 2 and "no_such_scenario" in err and "Traceback" not in err


def test_bad_scenario_file_names_file_key_and_expectation(capsys, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[[threads]]\nname = "w"\nprogram = [{ op = "stor", pages = [0] }]\n')
    rc, _, err = run_cli(capsys, "explore", str(bad))
    assert rc == 2
    assert "bad.toml" in err and "threads[0].program[0].op" in err and "expected one of" in err


def test_toml_syntax_error(capsys, tmp_path):
    bad = tmp_path / "syntax.toml"
    bad.write_text("name = \n")
    rc, _, err = run_cli(capsys, "explore", str(bad))
    assert rc == 2 and "syntax.toml" in err


@pytest.mark.parametrize("argv, needle", [
    (["explore", "madv_dontneed", "--budget", "0"], "--budget"),
    (["explore", "madv_dontneed", "--ordering", "sideways"], "ordering"),
    (["explore", "madv_dontneed", "--param", "pages"], "pages"),
    (["explore", "madv_dontneed", "--param", "nosuch=1"], "nosuch"),
    (["explore", "madv_dontneed", "--gather", "mmu_gather_bundle=x"], "mmu_gather_bundle"),
    (["explore", "madv_dontneed", "--gather", "mmu_gather_bundle=0"], "mmu_gather_bundle"),
    (["replay", "/nonexistent/file"], "/nonexistent/file"),
    # stress and run: checked before Ray starts, so none of these needs a cluster
    (["stress", "anon_pages", "--trials", "0"], "--trials"),
    (["stress", "anon_pages", "--parallel", "0"], "--parallel"),
    (["stress", "anon_pages", "--jitter", "-1"], "--jitter"),
    (["stress", "anon_pages", "--hang-timeout", "0"], "--hang-timeout"),
    (["stress", "anon_pages", "--address", "nonsense"], "--address 'nonsense'"),
    (["stress", "anon_pages", "--address", "127.0.0.1:99999"], "port in 1..65535"),
    (["stress", "anon_pages", "--address", "http://127.0.0.1:6379"], "--address"),
    (["run", "anon_pages", "--address", "127.0.0.1:"], "--address"),
    (["run", "anon_pages", "--trial", "-1"], "--trial"),
])
def test_bad_options(capsys, argv, needle):
    rc, _, err = run_cli(capsys, *argv)
    assert rc == 2 and needle in err and "Traceback" not in err


def test_replay_of_garbage_and_shrink_of_a_log(capsys, tmp_path):
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"\x00\x01not a log at all")
    rc, _, err = run_cli(capsys, "replay", str(junk))
    assert rc == 2 and "junk.bin" in err
    rc, _, err = run_cli(capsys, "shrink", str(junk), "-o", str(tmp_path / "out.schedule"))
    assert rc == 2 and "junk.bin" in err
    assert not (tmp_path / "out.schedule").exists()


def test_schedule_of_a_future_version(tmp_path):
    path = tmp_path / "future.schedule"
    path.write_bytes(msgpack.packb({"schema": "tlbrace-schedule", "version": 99}))
    with pytest.raises(ScheduleError, match="version 99"):
        read_schedule(path)


def test_schedule_of_version_1_says_how_to_make_a_new_one(tmp_path):
    path = tmp_path / "old.schedule"
    path.write_bytes(msgpack.packb({"schema": "tlbrace-schedule", "version": 1, "schedule": []}))
    with pytest.raises(ScheduleError, match="schedule version 1 .*record it again"):
        read_schedule(path)


def test_schedule_with_a_bad_transition(tmp_path):
    path = tmp_path / "bad.schedule"
    path.write_bytes(msgpack.packb({"schema": "tlbrace-schedule", "version": VERSION, "schedule": [["x", 1]],
                                    "scenario_source": "", "params": {}, "config": {}, "invariants": []}))
    with pytest.raises(ScheduleError, match="schedule"):
        read_schedule(path)


def test_schedule_whose_scenario_text_is_broken(tmp_path):
    path = tmp_path / "broken.schedule"
    path.write_bytes(msgpack.packb({"schema": "tlbrace-schedule", "version": VERSION, "schedule": [],
                                    "scenario_source": "[[threads]]\nname = 3\n", "params": {},
                                    "config": {}, "invariants": [], "scenario": "s"}))
    with pytest.raises(ScheduleError, match="scenario_source"):
        read_schedule(path)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=400))
def test_random_bytes_as_a_log(tmp_path, data):
    path = tmp_path / "random.log"
    path.write_bytes(data)
    try:
        read_log(path)
    except LogError:
        pass


_plain = st.recursive(st.none() | st.booleans() | st.integers(-5, 5) | st.text(max_size=5),
                      lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                                   max_size=4), max_leaves=10)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(doc=st.fixed_dictionaries({"schema": st.just("tlbrace-schedule"), "version": st.just(VERSION)},
                                 optional={"schedule": _plain, "scenario_source": _plain, "params": _plain,
                                           "config": _plain, "invariants": _plain, "scenario": _plain}))
def test_random_schedule_documents(tmp_path, doc):
    path = tmp_path / "random.schedule"
    path.write_bytes(msgpack.packb(doc))
    try:
        read_schedule(path)
    except ScheduleError:
        pass


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=200))
def test_random_bytes_as_a_schedule(tmp_path, data):
    path = tmp_path / "random.schedule"
    path.write_bytes(data)
    try:
        read_schedule(path)
    except ScheduleError:
        pass


def test_a_schedule_whose_map_key_is_a_map_is_refused(tmp_path):
    # Hypothesis found it in CI: msgpack raises TypeError (unhashable key) for a map keyed by a map.
    path = tmp_path / "map-key.schedule"
    path.write_bytes(b"\x81\x80\x00")
    with pytest.raises(ScheduleError, match="not a tlbrace schedule file"):
        read_schedule(path)


# --- stress/run options and results files (checked before Ray starts: none of these needs a cluster) ----------

def test_a_bad_ray_address_in_the_environment_is_named(capsys, monkeypatch):
    monkeypatch.setenv("RAY_ADDRESS", "not an address")
    rc, _, err = run_cli(capsys, "stress", "anon_pages")
    assert rc == 2 and "RAY_ADDRESS 'not an address'" in err


def _results_header(**over):
    from logs.results_file import make_header
    from kernel_model.config import Config
    from scenarios.loader import load_scenario

    sc = load_scenario("anon_pages")
    header = make_header(run="r", scenario=sc.name, scenario_source=sc.source, params=sc.params,
                         config=Config().to_dict(), seed=0, trials=100, jitter_us=0.0)
    header.update(over)
    return header


def _frames(*objs) -> bytes:
    from logs.results_file import frame

    return b"".join(frame(o) for o in objs)


# Named by what each must say: the headers carry make_header's creation time, so ids made from the bytes differ
# between two xdist workers that collect a second apart ("Different tests were collected between gw0 and gw1").
RESULTS_FILES = [
    (b"", "not a tlbrace results file"),
    (b"\xc1garbage", "not a tlbrace results file"),
    (_frames({"schema": "tlbrace-log", "version": 1}), "not a tlbrace results file"),
    (_frames({"schema": "tlbrace-results", "version": 7}), "results schema version 7"),
    (_frames({"schema": "tlbrace-results", "version": 2, "run": "r"}), "header key 'scenario'"),
    (_frames(_results_header()) + _frames([1, 2]), "record at byte"),
    (_frames(_results_header())[:-3] + b"\x00\x00\x00", "header is damaged at byte 0"),
    (msgpack.packb(_results_header(version=1)), "a version 1 results file"),
    (_frames(_results_header(seed=9)), "seed is 9 there, 0 here"),
    (_frames(_results_header(trials=50)), "trials is 50 there, 100 here"),
    (_frames(_results_header(scenario="munmap")), "scenario is 'munmap' there"),
]


@pytest.mark.parametrize("content, needle", RESULTS_FILES, ids=[f"{i}-{needle}" for i, (_, needle) in
                                                                enumerate(RESULTS_FILES)])
def test_a_results_file_that_does_not_fit_is_refused_and_kept(capsys, tmp_path, content, needle):
    path = tmp_path / "results.msgpack"
    path.write_bytes(content)
    rc, _, err = run_cli(capsys, "stress", "anon_pages", "--trials", "100", "--out", str(tmp_path), "--resume")
    assert rc == 2 and needle in err and str(path) in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert path.read_bytes() == content
    assert sorted(p.name for p in tmp_path.iterdir()) == [".tlbrace.lock", "results.msgpack"]  # nothing else


def _kernel_of(version, cfg) -> dict:
    from kernel_model.kernels import fixes_in_config

    return {"version": version, "fixes": sorted(fixes_in_config(cfg.without, cfg.to_dict()))}


@pytest.mark.parametrize("recorded, argv, needle", [
    ({"kernel": "4.12"}, ["--kernel", "4.13"], "kernel version is '4.12' there, '4.13' here"),
    ({"kernel": "4.13"}, ["--kernel", "4.12"], "kernel fixes is ["),
    ({"align": 5}, [], "align is 5 there, 0 here"),
    ({}, ["--align", "5"], "align is 0 there, 5 here"),
])
def test_a_resume_with_another_kernel_or_aligner_is_refused(capsys, tmp_path, recorded, argv, needle):
    """The results header records --kernel (the release and the fixes it gives) and --align; a resume that asks
    for another is refused with the file, the key, what it holds and what was asked."""
    from kernel_model.config import Config
    from kernel_model.kernels import kernel_config

    version = recorded.get("kernel")
    cfg = Config(**kernel_config(version)) if version else Config()
    path = tmp_path / "results.msgpack"
    content = _frames(_results_header(kernel=_kernel_of(version, cfg), align=recorded.get("align", 0)))
    path.write_bytes(content)
    rc, _, err = run_cli(capsys, "stress", "anon_pages", "--trials", "100", "--out", str(tmp_path), "--resume",
                         *argv)
    assert rc == 2 and needle in err and str(path) in err and "Traceback" not in err, err
    assert path.read_bytes() == content


def test_the_same_kernel_and_aligner_resume(tmp_path):
    """The header the command writes is the one its resume accepts (--kernel given as v4.12 or 4.12 alike)."""
    from actors.campaign import CampaignOptions, prepare_results
    from kernel_model.config import Config
    from kernel_model.kernels import kernel_config
    from logs.results_file import ResultsWriter
    from scenarios.loader import load_scenario

    sc = load_scenario("anon_pages")
    cfg = Config(**kernel_config("4.12"))
    opts = CampaignOptions(out=str(tmp_path), results=True, kernel="v4.12", align=7)
    first = prepare_results(sc, cfg, opts)
    assert first.header["kernel"] == _kernel_of("4.12", cfg) and first.header["align"] == 7
    ResultsWriter(first.path, first.header).close()
    first.release()
    again = prepare_results(sc, cfg, CampaignOptions(out=str(tmp_path), results=True, resume=True, kernel="4.12",
                                                     align=7))
    assert again.resumed is not None and again.header["run"] == first.header["run"]
    again.release()


def _ok_record(trial: int) -> dict:
    from logs.results_file import trial_record

    return trial_record(trial=trial, seed=1, status="ok", invariants=[], detail="", actor=None, steps=9,
                        seconds=0.1, nodes=[], log=None)


def test_a_results_file_cut_short_by_a_kill_is_read_up_to_the_cut(tmp_path):
    from logs.results_file import read_results

    whole = _frames(_results_header(), _ok_record(3))
    path = tmp_path / "results.msgpack"
    path.write_bytes(whole + _frames(_ok_record(4))[:5])
    contents = read_results(path)
    assert [r["trial"] for r in contents.records] == [3] and contents.intact == len(whole) and contents.torn == 5
    assert contents.skipped == []


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(junk=st.none() | st.binary(max_size=400), records=st.lists(_plain, max_size=4), cut=st.integers(0, 40))
def test_random_results_files(tmp_path, junk, records, cut):
    """Random bytes, or a good header then random records, cut anywhere: read, or one ResultsError."""
    from logs.results_file import ResultsError, read_results

    head = _frames(_results_header()) if junk is None else junk
    data = head + b"".join(_frames(r) for r in records)
    path = tmp_path / "random.results"
    path.write_bytes(data[:max(0, len(data) - cut)])
    try:
        contents = read_results(path)
    except ResultsError:
        return
    assert contents.intact + contents.torn == path.stat().st_size
    assert all(isinstance(r, dict) and r["type"] == "trial" for r in contents.records)
