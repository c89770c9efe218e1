"""Results store, resume, SIGKILL and worker-count invariance, through the real CLI on the fake suite."""

import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from evalkit.cli import main
from evalkit.results.report import report_runs
from evalkit.run.driver import RunConfig, execute
from evalkit.core.registry import register
from evalkit.results.store import ResultStore, RunMismatch


def outcomes(run_dir):
    with ResultStore(run_dir, readonly=True) as store:
        return sorted((r.key, r.success, r.termination, r.steps, r.queries) for r in store.results())


def config(tmp_path, name="run", **kw):
    base = dict(suites=["fake"], policy="random", policy_args={"chunk_size": 3, "scale": 0.8}, episodes_per_task=4,
                out=str(tmp_path / name))
    base.update(kw)
    return RunConfig.from_dict(base)


def test_rerun_skips_finished_episodes(tmp_path):
    execute(config(tmp_path, episodes_per_task=2), progress=False)
    assert len(outcomes(tmp_path / "run")) == 8
    execute(config(tmp_path), progress=False)  # extend to 4 per task: only the missing 8 run
    store = ResultStore(tmp_path / "run", readonly=True)
    sessions = [row[0] for row in store.db.execute("SELECT session FROM episodes ORDER BY session")]
    assert sessions.count(1) == 8 and sessions.count(2) == 8
    assert len(store.sessions()) == 2 and store.sessions()[0]["versions"]["numpy"]
    assert store.meta("semantics")["protocol"]["name"] == "openvla"


def test_changed_identity_is_refused(tmp_path):
    execute(config(tmp_path, episodes_per_task=1), progress=False)
    with pytest.raises(RunMismatch, match="mode: stored 'open_loop', now 'receding:2'"):
        execute(config(tmp_path, episodes_per_task=1, mode="receding:2"), progress=False)


def test_two_workers_match_one_worker(tmp_path):
    register("policy", "test-stateful", "helpers.faulty:Stateful")
    for policy, args in [("random", {"chunk_size": 3, "scale": 0.8}), ("scripted-reach", {"chunk_size": 2}),
                         ("test-stateful", {})]:
        one = execute(config(tmp_path, f"w1-{policy}", policy=policy, policy_args=args), progress=False)
        two = execute(config(tmp_path, f"w2-{policy}", policy=policy, policy_args=args, workers=2), progress=False)
        assert outcomes(one) == outcomes(two)
    assert any(row[1] for row in outcomes(two))  # the scripted policy does succeed


def test_errors_do_not_stop_the_run(tmp_path):
    out = execute(config(tmp_path, suites=["fake_fragile"], workers=2), progress=False)
    rows = outcomes(out)
    assert len(rows) == 16
    assert {r[2] for r in rows if r[0].startswith("fake_fragile/1/")} == {"error"}
    assert {r[2] for r in rows if not r[0].startswith("fake_fragile/1/")} == {"budget"}


def _cli(out, *extra):
    return [sys.executable, "-m", "evalkit", "run", "--suite", "fake", "--policy", "random", "--policy-arg",
            "latency_s=0.003", "--episodes-per-task", "6", "--out", str(out), "--no-progress", *extra]


@pytest.mark.parametrize("workers", ["1", "2"])
def test_sigkill_then_rerun_equals_uninterrupted_run(tmp_path, workers):
    reference = tmp_path / "reference"
    subprocess.run(_cli(reference, "-w", workers), check=True, capture_output=True)
    killed = tmp_path / "killed"
    proc = subprocess.Popen(_cli(killed, "-w", workers), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.time() + 60
    while time.time() < deadline and _count(killed) < 8:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # the parent and its workers, with no chance to clean up
    proc.wait()
    partial = _count(killed)
    assert 8 <= partial < 22, "the kill should land halfway"
    subprocess.run(_cli(killed, "-w", workers), check=True, capture_output=True)
    assert outcomes(killed) == outcomes(reference)
    assert report_runs([killed]).split("\n\n")[:4] == report_runs([reference]).split("\n\n")[:4]


def _count(run_dir):
    path = run_dir / "results.sqlite"
    if not path.exists():
        return 0
    try:
        with sqlite3.connect(path, timeout=5) as db:
            return db.execute("SELECT COUNT(*) FROM episodes").fetchone()[0]
    except sqlite3.OperationalError:
        return 0


def test_yaml_config_equals_flags(tmp_path, capsys):
    (tmp_path / "cfg.yaml").write_text(
        "suite: fake\npolicy: random\npolicy_args: {chunk_size: 3, scale: 0.8}\nepisodes_per_task: 2\n"
        f"out: {tmp_path / 'yaml'}\n")
    assert main(["run", "--config", str(tmp_path / "cfg.yaml"), "--no-progress"]) == 0
    assert main(["run", "--suite", "fake", "--policy", "random", "--policy-arg", "chunk_size=3", "--policy-arg",
                 "scale=0.8", "--episodes-per-task", "2", "--out", str(tmp_path / "flags"), "--no-progress"]) == 0
    assert outcomes(tmp_path / "yaml") == outcomes(tmp_path / "flags")


def test_unknown_names_suggest_the_closest(capsys):
    assert main(["run", "--suite", "libero_spatail", "--policy", "zero"]) == 2
    assert "Did you mean 'libero_spatial'" in capsys.readouterr().err
    assert main(["run", "--suite", "fake", "--policy", "orcale"]) == 2
    assert "Did you mean 'oracle'" in capsys.readouterr().err
    assert main(["run", "--suite", "fake", "--mode", "receding"]) == 2
    assert "receding:K" in capsys.readouterr().err


def test_list_imports_no_torch_or_simulator():
    code = ("import sys; from evalkit.cli import main; main(['list']); "
            "heavy = [m for m in ('torch', 'robosuite', 'mujoco', 'libero') if m in sys.modules]; "
            "assert not heavy, heavy")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "libero_spatial" in out.stdout and "oracle" in out.stdout
