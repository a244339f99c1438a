"""``tlbrace fuzz``: the generator covers every op and only writes what the loader accepts, campaigns are
deterministic, shrinking keeps the failure, a bounded campaign finds the race on the old kernel and none on the
patched one, and a Ray campaign on a two-node cluster reports what a serial one does."""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

import pytest
from child_process import on_two_nodes

from cli.main import main
from controlled.replay import run_schedule
from fuzz.generate import Spec, generate, load_spec, scenario_seed, to_toml
from fuzz.ops import OP_GENERATORS
from fuzz.shrink import measure, shrink
from kernel_model.program import OP_KINDS
from logs.schedule_file import read_schedule

ROOT = Path(__file__).resolve().parents[1]


def fuzz_json(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict]:
    code = main(["fuzz", *argv, "--json"])
    return code, json.loads(capsys.readouterr().out)


def test_every_op_the_loader_accepts_has_one_generator() -> None:
    assert set(OP_GENERATORS) == set(OP_KINDS)


def test_generated_scenarios_load_and_cover_every_op_and_knob() -> None:
    ops: Counter[str] = Counter()
    knobs: Counter[str] = Counter()
    shapes = set()
    for i in range(300):
        spec = generate(0, i)
        scenario, text = load_spec(spec, f"fuzz-0-{i}")  # raises if the loader refuses it
        assert scenario.source == text and 2 <= len(scenario.threads) <= 4 and 1 <= scenario.setup.pages <= 3
        shapes.add((len(scenario.threads), scenario.setup.pages))
        for line in text.splitlines():
            if line.startswith("program"):
                ops.update(part.split('"')[1] for part in line.split("op = ")[1:])
        knobs.update(spec.setup)
        knobs.update(["warm_tlb"] if spec.warm_tlb else [])
    assert set(ops) == set(OP_KINDS)
    assert {"mapped", "anon", "dirty", "write_notify", "ptes_per_table", "warm_tlb"} <= set(knobs)
    assert shapes == {(t, p) for t in range(2, 5) for p in range(1, 4)}


def test_scenario_i_depends_on_seed_and_index_alone() -> None:
    assert [to_toml(generate(7, i), "x") for i in range(20)] == [to_toml(generate(7, i), "x") for i in range(20)]
    assert generate(7, 3) != generate(8, 3) and scenario_seed(7, 3) != scenario_seed(7, 4)


def test_shrink_keeps_the_failure_and_removes_everything_else() -> None:
    spec = next(s for s in (generate(3, i) for i in range(500))
                if len(s.threads) == 4 and s.pages == 3 and s.ops >= 7)

    def stores_to_last_page(s: Spec) -> bool:  # a stand-in failure: some thread stores to page pages-1
        return any(op["op"] == "store" and s.pages - 1 in op["pages"] for _, ops in s.threads for op in ops)

    if not stores_to_last_page(spec):
        spec = spec.with_threads(spec.threads + (("w", ({"op": "store", "pages": [spec.pages - 1]},)),))
    small = shrink(spec, stores_to_last_page)
    assert stores_to_last_page(small) and measure(small) < measure(spec)
    assert small.size() == (1, 1, 1) and small.setup == {} and small.warm_tlb == ()


def test_same_seed_same_report(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    args = ["--count", "12", "--seed", "5", "--ordering", "eager", "--budget", "1500"]
    _, a = fuzz_json(capsys, *args, "--out", str(tmp_path / "a"))
    _, b = fuzz_json(capsys, *args, "--out", str(tmp_path / "b"))
    for r in (a, b):
        r.pop("seconds")
        for v in r["violations"]:
            v["scenario_file"] = os.path.basename(v["scenario_file"])
            v["schedule_file"] = os.path.basename(v["schedule_file"])
    assert a == b and a["generated"] == 12


def test_eager_campaign_finds_lost_dirty_data_and_writes_replayable_files(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    # Seed 3's 40 scenarios include one where the old order loses data (about 1 in 40 generated scenarios do).
    code, r = fuzz_json(capsys, "--count", "40", "--seed", "3", "--ordering", "eager", "--budget", "3000",
                        "--out", str(tmp_path))
    assert code == 1 and r["generated"] == r["explored"] == 40 and not r["rejected"]
    lost = [v for v in r["violations"] if v["invariant"] == "lost_dirty_data"]
    assert lost, r["by_invariant"]
    for v in lost:
        sf = read_schedule(v["schedule_file"])
        assert sf.scenario.source == Path(v["scenario_file"]).read_text()
        replay = run_schedule(sf.scenario, sf.config, sf.schedule, complete=False, record=False)
        assert "lost_dirty_data" in replay.invariants and len(replay.executed) == v["steps"]


PATCHED = [["--ordering", "delayed"], ["--arch", "up"], ["--arch", "s390"]]


@pytest.mark.parametrize("config", PATCHED, ids=["delayed", "up", "s390"])
def test_patched_kernels_violate_nothing(config: list[str], capsys: pytest.CaptureFixture[str],
                                         tmp_path: Path) -> None:
    code, r = fuzz_json(capsys, "--count", "40", "--seed", "1", *config, "--budget", "3000",
                        "--out", str(tmp_path))
    assert r["explored"] == 40 and not r["rejected"]
    for v in r["violations"]:  # whatever is found is a minimal, replayable report
        sf = read_schedule(v["schedule_file"])
        replay = run_schedule(sf.scenario, sf.config, sf.schedule, complete=False, record=False)
        assert v["invariant"] in replay.invariants
    assert code == 0 and r["violations"] == []


CLUSTER_BODY = r"""
    from kernel_model.config import Config
    from fuzz.run import FuzzOptions, run_ray, run_serial
    ray.init(address=cluster.address, **ray_session.quiet_init_kwargs())
    opts = FuzzOptions(Config(ordering="eager"), budget=1500)
    on_ray = run_ray(11, 16, opts, parallel=2)
    serial = run_serial(11, 16, opts)
    nodes = {o.node for o in on_ray}
    for o in on_ray:
        o.node = ""
    print(json.dumps({"same": on_ray == serial, "nodes": len(nodes),
                      "alive": sum(1 for n in ray.nodes() if n["Alive"]),
                      "found": [o.invariants for o in serial if o.invariants]}))
"""


@pytest.mark.wild  # a two-node Ray cluster in a child process
def test_ray_campaign_on_two_nodes_reports_what_a_serial_one_does() -> None:
    out = on_two_nodes(CLUSTER_BODY)[-1]
    assert out["same"] and out["alive"] == 2 and out["nodes"] == 2, out


def test_using_explores_the_first_scenarios_that_use_those_operations(capsys: pytest.CaptureFixture[str],
                                                                       tmp_path: Path) -> None:
    """--using keeps each scenario's index (scenario i is the i-th drawn) and skips those without the ops."""
    from fuzz.generate import generate, uses
    from fuzz.run import scenario_indices

    new_ops = frozenset({"mremap", "ftruncate", "mprotect", "reclaim"})
    indices = scenario_indices(4, 10, new_ops)
    assert len(indices) == 10 and all(uses(generate(4, i), new_ops) for i in indices)
    assert any(not uses(generate(4, i), new_ops) for i in range(indices[-1]) if i not in indices)
    code, r = fuzz_json(capsys, "--count", "3", "--seed", "4", "--using", ",".join(sorted(new_ops)), "--budget",
                        "300", "--kernel", "6.18", "--out", str(tmp_path))
    assert code == 0 and r["generated"] == 3 and r["using"] == sorted(new_ops)
    assert main(["fuzz", "--using", "mremapp,store"]) == 2 and "--using: 'mremapp,store': item 1, 'mremapp'," in capsys.readouterr().err


def test_bad_input_is_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["fuzz", "--count", "0"]) == 2
    assert main(["fuzz", "--param", "pages=2"]) == 2
    assert main(["fuzz", "--budget", "-1"]) == 2
    assert "--count" in capsys.readouterr().err
    assert main(["fuzz", "--parallel", "1000"]) == 2  # it used to start a thousand Ray workers
    assert "--parallel: expected an integer from 0 to 64, got 1000" in capsys.readouterr().err
    assert main(["fuzz", "--gather", "max_gather_batch=0"]) == 2
    assert "--gather 'max_gather_batch=0': max_gather_batch: expected an integer >= 1, got 0" in capsys.readouterr().err


def test_a_huge_count_is_refused_before_it_takes_the_memory(capsys: pytest.CaptureFixture[str],
                                                            tmp_path: Path) -> None:
    """--count 10**8 with --budget 1 used to build its index list and run out of memory (exit 3)."""
    assert main(["fuzz", "--count", str(10**8), "--budget", "1", "--out", str(tmp_path)]) == 2
    assert "--count: expected an integer from 1 to 1,000,000, got 100000000" in capsys.readouterr().err


@pytest.mark.parametrize("where", ["file", "under_file"])
def test_an_out_that_cannot_be_a_directory_is_refused_before_the_campaign(
        where: str, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """--out is written only when a violation is found; a file there used to fail after the whole campaign
    (exit 3), losing every violation it had found."""
    (tmp_path / "f").write_text("keep")
    out = tmp_path / "f" if where == "file" else tmp_path / "f" / "sub"
    assert main(["fuzz", "--mutant", "skip_tlb_flush_rmaps", "--count", "2", "--budget", "500",
                 "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"--out {out}:" in err and "expected a directory" in err and "tlbrace fuzz:" not in err
    assert (tmp_path / "f").read_text() == "keep"


def test_an_out_nobody_may_write_is_refused_before_the_campaign(monkeypatch: pytest.MonkeyPatch,
                                                                capsys: pytest.CaptureFixture[str],
                                                                tmp_path: Path) -> None:
    """A read-only --out (a read-only mount, or a directory of another user: os.access says so; the tests may
    run as root, who may write a mode-555 directory, so access is what is faked)."""
    real = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: False if str(path) == str(tmp_path) else real(path, mode))
    assert main(["fuzz", "--count", "2", "--budget", "100", "--out", str(tmp_path / "new")]) == 2
    assert f"--out {tmp_path / 'new'}: {tmp_path} is not writable" in capsys.readouterr().err
    assert not (tmp_path / "new").exists()


def test_violations_are_written_as_found(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A campaign stopped after its first violation (here: the next scenario raises) keeps that violation's
    files; they used to be written only after the last scenario."""
    import fuzz.run

    real, calls = fuzz.run.fuzz_one, []

    def one_then_stop(seed: int, index: int, opts: fuzz.run.FuzzOptions) -> fuzz.run.Outcome:
        outcome = real(seed, index, opts)
        calls.append(outcome)
        if any(o.invariants for o in calls[:-1]):
            raise KeyboardInterrupt
        return outcome

    monkeypatch.setattr(fuzz.run, "fuzz_one", one_then_stop)
    assert main(["fuzz", "--mutant", "skip_tlb_flush_rmaps", "--seed", "1", "--count", "20", "--budget", "1500",
                 "--out", str(tmp_path)]) == 130
    found = [o for o in calls[:-1] if o.invariants]  # the last one was interrupted before it was reported
    assert len(found) == 1 and len(calls) < 20
    assert {p.name for p in tmp_path.glob("*.toml")} == {f"{o.name}.toml" for o in found}
    assert len(list(tmp_path.glob("*.schedule"))) == len(found)


def test_check_reduction_agrees_on_generated_scenarios(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """`fuzz --check-reduction`: the reduced, merged and full searches agree on each generated scenario that
    fits, on a kernel with races (the eager order) as on the patched one."""
    for ordering in ("eager", "delayed"):
        rc, report = fuzz_json(capsys, "--count", "12", "--seed", "3", "--ordering", ordering, "--budget", "3000",
                               "--check-reduction", "--out", str(tmp_path / ordering))
        assert "reduction_mismatch" not in report["by_invariant"], report["violations"]
        assert report["reduction_checked"] >= 3


def test_check_reduction_catches_an_unsound_reduction(monkeypatch: pytest.MonkeyPatch) -> None:
    """A reducer that keeps only the first enabled transition (no persistent set at all) must be caught: the
    checker can fail."""
    from controlled.reducer import Reducer
    from fuzz.reduction_check import reduction_mismatch
    from kernel_model.config import Config
    from scenarios.loader import load_scenario

    sc = load_scenario("madv_dontneed")
    cfg = Config.from_dict({**sc.config, "ordering": "eager"})
    assert reduction_mismatch(sc, cfg, 20_000) == ""  # compared, and they agree
    monkeypatch.setattr(Reducer, "persistent", lambda self, pos, s, enabled: enabled[:1])
    found = reduction_mismatch(sc, cfg, 20_000)
    assert found is not None and "full: verdicts ['lost_dirty_data']" in found, found


def test_a_sampling_campaign_is_seeded_shrinks_and_replays(capsys: pytest.CaptureFixture[str],
                                                          tmp_path: Path) -> None:
    """--strategy pct: each scenario's runs are drawn from its own seed (the same report twice, and scenario i
    alone gives what it gave in the campaign), a found violation is shrunk and its schedule replays."""
    from fuzz.generate import scenario_from_text
    from fuzz.run import FuzzOptions, fuzz_one
    from kernel_model.config import Config

    # Seed 5: scenario 20 loses data within 21. (Seed 7's scenario 3 did, within 12, while the oracle also judged
    # windows that a later store closes; since session 20 a run must end with the data lost, and seed 7 finds none
    # in 40, seed 3 one in 40.)
    args = ["--strategy", "pct", "--ordering", "eager", "--seed", "5", "--count", "21", "--budget", "100"]
    code, a = fuzz_json(capsys, *args, "--out", str(tmp_path / "a"))
    _, b = fuzz_json(capsys, *args, "--out", str(tmp_path / "b"))
    assert code == 1 and a["strategy"] == "pct" and a["complete"] == 0
    strip = [(v["index"], v["invariants"], v["steps"], v["size"]) for v in a["violations"]]
    assert strip == [(v["index"], v["invariants"], v["steps"], v["size"]) for v in b["violations"]]
    index = a["violations"][0]["index"]
    alone = fuzz_one(5, index, FuzzOptions(Config(ordering="eager"), 100, "pct", shrink=True))
    assert alone.invariant == "lost_dirty_data" and alone.original_size is not None
    assert alone.size < alone.original_size
    sc = scenario_from_text(alone.text, alone.name)  # the shrunk scenario's file, through the loader
    replay = run_schedule(sc, Config(ordering="eager"), [tuple(t) for t in alone.schedule], complete=False,
                          record=False)
    assert "lost_dirty_data" in replay.invariants


def test_check_reduction_compares_end_states_only_where_nothing_is_violated() -> None:
    """Fuzz seed 205's scenario 19 (issue 17, author12) on 3.14 UP: every search stops a run at its first
    violation, and the sleep sets took an order to one end state that a violation cut short, so the reduced
    search counted 5 end states and the merged one 6, with the same verdicts. That is no reduction bug."""
    from fuzz.reduction_check import reduction_mismatch
    from kernel_model.config import Config
    from kernel_model.kernels import kernel_config
    from scenarios.loader import load_scenario_text

    text = ('[setup]\npages = 1\nmapped = true\nwrite_notify = false\nwarm_tlb = ["t1", "t2", "t3"]\n'
            '[[threads]]\nname = "t0"\nprogram = [{ op = "mmap_fixed", pages = [0] }]\n'
            '[[threads]]\nname = "t1"\nprogram = [{ op = "store", pages = [0] }]\n'
            '[[threads]]\nname = "t2"\nprogram = [{ op = "msync", pages = [0] }]\n'
            '[[threads]]\nname = "t3"\nprogram = [{ op = "evict", pages = [0] }]\n')
    sc = load_scenario_text(text, name="fuzz-205-19")
    assert reduction_mismatch(sc, Config(**{**kernel_config("3.14"), "arch": "up"}), 10_000) == ""
