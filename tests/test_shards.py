"""Issue 14, item 5: `evalkit run --shard I/N` and `evalkit merge DIR... --out OUT` on the fake suite."""

import dataclasses
import json
import shutil
import sqlite3
from pathlib import Path

import pytest

from evalkit import cli
from evalkit.checks import doctor as doctor_mod
from evalkit.cli import main
from evalkit.core.protocol import OPENVLA
from evalkit.core.settings import SettingError
from evalkit.results.merge import merge_runs
from evalkit.results.report import report_runs
from evalkit.results.store import ResultStore, RunLock, RunLocked, RunMismatch
from evalkit.run.driver import RunConfig, execute
from evalkit.run.shards import shard_of
from suites import fake

POLICIES = [("random", {"chunk_size": 3}), ("scripted-reach", {})]


def config(tmp_path, name, policy="random", policy_args=None, **kw):
    base = dict(suites=["fake"], policy=policy, policy_args={"chunk_size": 3} if policy_args is None else policy_args,
                episodes_per_task=4, out=str(tmp_path / name))
    base.update(kw)
    return RunConfig.from_dict(base)


def run(tmp_path, name, **kw):
    return str(execute(config(tmp_path, name, **kw), progress=False))


def shards(tmp_path, prefix="s", count=3, **kw):
    return [run(tmp_path, f"{prefix}{i}", shard=f"{i}/{count}", **kw) for i in range(count)]


def outcomes(run_dir):
    with ResultStore(run_dir, readonly=True) as store:
        return sorted((r.key, r.success, r.termination, r.steps, r.queries, r.settle_fingerprint)
                      for r in store.results())


def tables(run_dir):
    """The report's tables (per task, per suite), without the line naming the directory."""
    return report_runs([run_dir]).split("\n\n")[:4]


# -- sharding ------------------------------------------------------------------------------------

def test_shard_of_deals_round_robin_disjoint_covering_and_balanced():
    episodes = list(range(10))
    parts = [shard_of(episodes, f"{i}/3") for i in range(3)]
    assert parts == [[0, 3, 6, 9], [1, 4, 7], [2, 5, 8]]
    assert sorted(sum(parts, [])) == episodes and shard_of(episodes, None) == episodes
    assert shard_of(episodes, "0/1") == episodes and shard_of(episodes, "9/12") == [9]


def test_shard_runs_are_disjoint_cover_the_run_and_record_the_run(tmp_path):
    whole = {row[0] for row in outcomes(run(tmp_path, "whole"))}
    parts = [{row[0] for row in outcomes(d)} for d in shards(tmp_path)]
    assert [len(p) for p in parts] == [6, 5, 5]
    assert set.union(*parts) == whole and sum(map(len, parts)) == len(whole) == 16
    with ResultStore(tmp_path / "s1", readonly=True) as store:
        record = store.meta("shard")
        assert store.sessions()[0]["config"]["shard"] == "1/3"
        assert "shard" not in store.meta("identity")  # shards of one run share the identity
    assert (record["index"], record["count"], record["episodes_in_run"]) == (1, 3, 16)
    assert record["keys"][:5] == ["fake/0/0/0", "fake/0/1/1", "fake/0/2/2", "fake/0/3/3", "fake/1/0/0"]
    assert parts[1] == set(record["keys"][1::3])


def test_default_out_dir_names_the_shard_and_an_explicit_out_is_kept(tmp_path):
    base = {"suites": ["fake"], "policy": "random"}
    assert str(RunConfig.from_dict({**base, "shard": " 1 / 4"}).out_dir()).endswith("__shard-1-of-4")
    assert RunConfig.from_dict({**base, "shard": "1/4"}).out_dir().name == \
        RunConfig.from_dict(base).out_dir().name + "__shard-1-of-4"
    assert RunConfig.from_dict({**base, "shard": "1/4", "out": str(tmp_path / "x")}).out_dir() == tmp_path / "x"
    assert RunConfig.from_dict({**base, "shard": " 1 / 4"}).shard == "1/4"


@pytest.mark.parametrize("value", ["4/4", "5/4", "-1/4", "0/0", "1", "a/b", "1/4/2", ""])
def test_bad_shard_values_are_refused_before_the_run_directory_exists(tmp_path, capsys, value):
    out = tmp_path / "run"
    assert main(["run", "--suite", "fake", "--policy", "random", "--episodes-per-task", "1", "--no-progress",
                 "--out", str(out), f"--shard={value}"]) == 2
    assert not out.exists()
    assert f"run setting 'shard': expected I/N with 0 <= I < N, like 0/4 (got {value!r})" in capsys.readouterr().err


def test_yaml_shard_must_be_a_string():
    with pytest.raises(SettingError, match=r"expected I/N with 0 <= I < N, like 0/4 \(got 3\)"):
        RunConfig.from_dict({"suites": ["fake"], "policy": "random", "shard": 3})


def test_the_shard_flag_runs_the_shard(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(cli, "SUPERVISE", False)
    assert main(["run", "--suite", "fake", "--policy", "random", "--policy-arg", "chunk_size=3", "--episodes-per-task",
                 "4", "--shard", "2/3", "--out", str(tmp_path / "flag"), "--no-progress"]) == 0
    assert outcomes(tmp_path / "flag") == outcomes(run(tmp_path, "api", shard="2/3"))


def test_a_shard_directory_holds_one_shard(tmp_path):
    run(tmp_path, "s0", shard="0/3")
    with pytest.raises(RunMismatch, match="holds results of shard 0/3; this run is shard 1/3"):
        run(tmp_path, "s0", shard="1/3")
    with pytest.raises(RunMismatch, match="holds results of shard 0/3; this run is no shard"):
        run(tmp_path, "s0")
    with pytest.raises(RunMismatch, match="another list of episodes"):
        run(tmp_path, "s0", shard="0/3", episodes_per_task=5)
    run(tmp_path, "s0", shard="0/3")  # the same shard resumes
    run(tmp_path, "whole", episodes_per_task=1)
    with pytest.raises(RunMismatch, match="holds results of no shard"):
        run(tmp_path, "whole", shard="0/3")


# -- merging -------------------------------------------------------------------------------------

@pytest.mark.parametrize("policy, args", POLICIES)
def test_three_shards_merge_into_the_unsharded_run(tmp_path, capsys, policy, args):
    whole = run(tmp_path, "whole", policy=policy, policy_args=args)
    parts = shards(tmp_path, policy=policy, policy_args=args)
    capsys.readouterr()
    assert main(["merge", *parts, "--out", str(tmp_path / "all")]) == 0
    out = capsys.readouterr().out
    assert "16 of 16 episodes of the run (16 written now)" in out and "missing" not in out
    assert outcomes(tmp_path / "all") == outcomes(whole)
    assert tables(tmp_path / "all") == tables(whole)
    with ResultStore(tmp_path / "all", readonly=True) as merged, ResultStore(whole, readonly=True) as reference:
        for key in ("identity", "semantics", "suites", "policy_spec", "reference_fingerprints"):
            assert merged.meta(key) == reference.meta(key), key
        assert merged.meta("shard") is None and merged.meta("merged")["shards"] == [0, 1, 2]
        session = merged.sessions()[-1]
        assert session["merged_from"] == parts and session["config"]["shard"] is None and session["git"]
    assert main(["merge", *parts, "--out", str(tmp_path / "all")]) == 0  # again: nothing new, nothing refused
    assert "(0 written now, 16 already there)" in capsys.readouterr().out


def test_a_missing_shard_is_listed_and_the_unsharded_command_finishes_it(tmp_path, capsys):
    whole = run(tmp_path, "whole")
    parts = shards(tmp_path)
    capsys.readouterr()
    assert main(["merge", parts[0], parts[2], "--out", str(tmp_path / "all")]) == 1
    out = capsys.readouterr().out
    assert "missing: 5 of 16 episodes are in no shard; shard(s) 1/3 not given: fake/0/1/1, fake/1/0/0, fake/1/3/3, " \
           "fake/2/2/2, fake/3/1/1." in out
    assert len(outcomes(tmp_path / "all")) == 11
    run(tmp_path, "all")  # the un-sharded command, --out OUT: only the missing five run
    with ResultStore(tmp_path / "all", readonly=True) as store:
        assert [s.get("merged_from") is not None for s in store.sessions()] == [True, False]
        assert sum(1 for (session,) in store.db.execute("SELECT session FROM episodes") if session == 2) == 5
    assert outcomes(tmp_path / "all") == outcomes(whole)
    assert tables(tmp_path / "all") == tables(whole)


def test_shards_of_differently_configured_runs_are_refused(tmp_path, capsys):
    a = run(tmp_path, "a", shard="0/2")
    b = run(tmp_path, "b", shard="1/2", seed=1)
    capsys.readouterr()
    assert main(["merge", a, b, "--out", str(tmp_path / "all")]) == 2
    err = capsys.readouterr().err
    assert f"shards of differently configured runs: {a} and {b} differ in seed: 0 vs 1" in err
    assert not (tmp_path / "all").exists()
    c = run(tmp_path, "c", shard="1/3")
    with pytest.raises(RunMismatch, match=f"shards of different splits: {a} \\(shard 0/2\\) and {c} \\(shard 1/3\\)"):
        merge_runs([a, c], tmp_path / "all")
    d = run(tmp_path, "d", shard="1/2", episodes_per_task=3)
    with pytest.raises(RunMismatch, match="different episode lists: .* a run of 16 episodes, .* one of 12"):
        merge_runs([a, d], tmp_path / "all")
    e = run(tmp_path, "e", shard="1/2", policy_args={"chunk_size": 2})
    with pytest.raises(RunMismatch, match=r"differ in policy_args: \{'chunk_size': '3'\} vs \{'chunk_size': '2'\}"):
        merge_runs([a, e], tmp_path / "all")


def test_shards_made_with_other_simulator_versions_are_refused(tmp_path):
    parts = shards(tmp_path)

    def record_versions(run_dir, **versions):  # as if the shard had run on a node with these packages
        with sqlite3.connect(Path(run_dir) / "results.sqlite") as db:
            (provenance,) = db.execute("SELECT provenance FROM sessions").fetchone()
            provenance = json.loads(provenance)
            provenance["versions"].update(versions)
            db.execute("UPDATE sessions SET provenance = ?", (json.dumps(provenance),))
        return provenance["versions"]

    for part in parts:
        record_versions(part, mujoco="3.3.2")
    record_versions(parts[1], mujoco="3.8.1", torch="0.0.1")
    with pytest.raises(RunMismatch, match=r"different simulator versions: mujoco 3\.3\.2 in .*s0, 3\.8\.1 in .*s1"):
        merge_runs(parts, tmp_path / "all")
    assert not (tmp_path / "all").exists()
    record_versions(parts[1], mujoco="3.3.2")  # only a policy-side package differs: merged, and said
    report = merge_runs(parts, tmp_path / "all")
    assert report.complete and any("different versions of torch (0.0.1, " in note for note in report.notes)


ORIGINAL_FAKE_SUITE = fake.fake_suite


def _with_reference(reference):
    return lambda name="fake": dataclasses.replace(ORIGINAL_FAKE_SUITE(name), fingerprint_file=str(reference))


def test_drifted_shards_beside_clean_ones_are_refused(tmp_path, monkeypatch):
    reference = tmp_path / "fake.json"
    reference.write_text(json.dumps(doctor_mod.reference_file([fake.fake_suite()], OPENVLA.wait_steps, ("numpy",))))
    monkeypatch.setattr(fake, "fake_suite", _with_reference(reference))
    policy = dict(policy="scripted-reach", policy_args={})
    clean = [run(tmp_path, f"s{i}", shard=f"{i}/3", **policy) for i in (0, 2)]
    monkeypatch.setattr(fake, "SETTLE_SHIFT", 0.02)  # shard 1's node has other physics
    drifted = run(tmp_path, "s1", shard="1/3", **policy)
    with pytest.raises(RunMismatch, match=r"different physics: the settled states of .*s1 \(fake task 1\) differ from "
                                          r"the committed reference, those of .*s0, .*s2 match it"):
        merge_runs([clean[0], drifted, clean[1]], tmp_path / "all")
    # every shard on the same drifted simulator: merged, and the report says the run drifted
    parts = [run(tmp_path, f"d{i}", shard=f"{i}/3", **policy) for i in range(3)]
    assert merge_runs(parts, tmp_path / "all").complete
    assert "DRIFTED SIMULATOR" in report_runs([tmp_path / "all"])


def test_duplicated_episodes_are_kept_once_when_identical_and_refused_when_not(tmp_path):
    whole = run(tmp_path, "whole")
    parts = shards(tmp_path)
    copy = shutil.copytree(parts[0], tmp_path / "s0-copy")
    report = merge_runs([*parts, str(copy)], tmp_path / "all")
    assert report.complete and len(report.duplicated) == 6 and report.duplicated[0] == "fake/0/0/0"
    assert "duplicated: 6 episode(s) stored in more than one shard with the same result, kept once" in report.text()
    assert outcomes(tmp_path / "all") == outcomes(whole)
    with sqlite3.connect(copy / "results.sqlite") as db:
        db.execute("UPDATE episodes SET steps = steps + 1 WHERE key = 'fake/1/2/2'")
    steps = next(r[3] for r in outcomes(whole) if r[0] == "fake/1/2/2")
    with pytest.raises(RunMismatch, match=rf"1 episode\(s\) are stored in two shards with different results: "
                                          rf"fake/1/2/2 \(.*s0: \w+, {steps} steps; .*s0-copy: \w+, {steps + 1} steps\)"):
        merge_runs([*parts, str(copy)], tmp_path / "other")


def test_out_must_not_hold_another_run_and_inputs_must_be_shards(tmp_path, capsys):
    parts = shards(tmp_path, count=2)
    run(tmp_path, "other", seed=3, episodes_per_task=1)
    with pytest.raises(RunMismatch, match="holds results of a differently configured run .*seed: stored 3, now 0"):
        merge_runs(parts, tmp_path / "other")
    whole = run(tmp_path, "whole", episodes_per_task=1)
    with pytest.raises(RunMismatch, match="is not a shard: it was run without --shard"):
        merge_runs([*parts, whole], tmp_path / "all")
    with pytest.raises(RunMismatch, match="holds shard 0/2 of a run; merge into another directory"):
        merge_runs([parts[1]], parts[0])
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="non-empty directory holding no evalkit run"):
        merge_runs(parts, tmp_path / "foreign")
    with pytest.raises(ValueError, match="is one of the shards being merged"):
        merge_runs(parts, parts[0])
    with RunLock(parts[1]), pytest.raises(RunLocked, match=f"cannot merge {parts[1]} yet: a run is still writing"):
        merge_runs(parts, tmp_path / "all")
    assert main(["merge", str(tmp_path / "nowhere"), "--out", str(tmp_path / "all")]) == 2
    assert "no results in" in capsys.readouterr().err
