"""Issue 12: one episode's fault stays in that episode, every run ends, a run directory has one writer.

The faulty policies and suites (tests/helpers/faulty.py) are loaded by a real `evalkit run` process
through the `module:attr` door, so the process deaths and hangs are real ones.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from evalkit.cli import main
from evalkit.run.driver import RunConfig, execute
from evalkit.results.store import ResultStore, RunLock, RunLocked, RunMismatch
from helpers.runs import outcomes, stored_count

HELPERS = Path(__file__).parent / "helpers"
EPISODES = 12  # the fake suite's 4 tasks x 3 init states


def evalkit(out, *flags, check=True, timeout=180, env=None):
    """`evalkit run` on the fake suite (3 init states per task) as a separate process."""
    command = [sys.executable, "-m", "evalkit", "run", "--suite", "fake", "--episodes-per-task", "3",
               "--out", str(out), "--no-progress", *flags]
    environment = {**os.environ, "PYTHONPATH": f"{HELPERS}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", **(env or {})}
    proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=environment)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc




def errors(run_dir) -> dict:
    with ResultStore(run_dir, readonly=True) as store:
        return {r.key: r.error for r in store.results() if r.termination not in ("success", "budget")}


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    """The same episodes with the healthy scripted reacher (the faulty ones' parent class)."""
    out = tmp_path_factory.mktemp("clean") / "run"
    evalkit(out, "--policy", "scripted-reach", "--policy-arg", "chunk_size=2")
    return outcomes(out)


def assert_only_faulted(run_dir, clean, faulted: dict) -> None:
    """`faulted`: episode key -> termination; every other episode exactly as in the clean run."""
    got = outcomes(run_dir)
    assert len(got) == EPISODES
    assert {k: v[0] for k, v in got.items() if k in faulted} == faulted
    assert {k: v for k, v in got.items() if k not in faulted} == {k: v for k, v in clean.items() if k not in faulted}


def test_a_policy_raising_on_every_fifth_episode_gives_the_same_store_with_1_and_4_workers(tmp_path, clean):
    runs = {w: tmp_path / f"w{w}" for w in (1, 4)}
    for workers, out in runs.items():
        evalkit(out, "--policy", "faulty:RaisesEveryFifth", "--policy-arg", "chunk_size=2", "-w", str(workers))
    fifth = {f"fake/{t}/{i}/{i}": "error" for t in range(4) for i in range(3) if (10 * t + i) % 5 == 0}
    assert fifth  # tasks 0 and 2 at init state 0
    for out in runs.values():
        assert_only_faulted(out, clean, fifth)
    assert outcomes(runs[1]) == outcomes(runs[4])


@pytest.mark.parametrize("policy, workers, reason", [
    ("faulty:Segfaults", 1, "killed by SIGSEGV"),
    ("faulty:Segfaults", 2, "killed by SIGSEGV"),  # in a batch with another episode: both re-run alone first
    ("faulty:Exits", 1, "exit code 3"),
])
def test_a_policy_that_kills_its_process_costs_one_episode(tmp_path, clean, policy, workers, reason):
    out = tmp_path / "run"
    proc = evalkit(out, "--policy", policy, "-w", str(workers))
    assert_only_faulted(out, clean, {"fake/1/0/0": "error"})
    error = errors(out)["fake/1/0/0"]
    assert reason in error and "while the policy answered a query" in error
    if "SIGSEGV" in reason:  # the fault handler's traceback names the faulting call
        assert "Segmentation fault" in error and "in segfault" in error
    assert "ended as error" in proc.stderr


@pytest.mark.parametrize("workers", [1, 2])
def test_a_simulator_that_segfaults_costs_one_episode(tmp_path, clean, workers):
    out = tmp_path / "run"
    evalkit(out, "--policy", "scripted-reach", "--policy-arg", "chunk_size=2", "--suite", "faulty:segfaulting_suite",
            "-w", str(workers))
    assert_only_faulted(out, clean, {"fake/1/0/0": "error"})
    assert "SIGSEGV" in errors(out)["fake/1/0/0"]


@pytest.mark.parametrize("flags", [
    ["--policy", "faulty:Hangs", "--query-timeout-s", "2"],
    ["--policy", "faulty:Hangs", "--query-timeout-s", "2", "-w", "2"],
    ["--policy", "scripted-reach", "--policy-arg", "chunk_size=2", "--suite", "faulty:hanging_suite",
     "--episode-timeout-s", "3"],
    ["--policy", "scripted-reach", "--policy-arg", "chunk_size=2", "--suite", "faulty:hanging_suite",
     "--episode-timeout-s", "3", "-w", "2"],
], ids=["policy-w1", "policy-w2", "env-w1", "env-w2"])
def test_a_hang_ends_as_a_timeout_and_the_run_finishes(tmp_path, clean, flags):
    out = tmp_path / "run"
    evalkit(out, *flags, timeout=120)
    assert_only_faulted(out, clean, {"fake/1/0/0": "timeout"})
    assert "_timeout_s" in errors(out)["fake/1/0/0"]


def test_a_worker_killed_from_outside_costs_its_episode_only(tmp_path, clean):
    """The policy SIGKILLs every worker while answering them (what the OOM killer does), so the
    replies go to dead workers: the failed send is handled like a failed receive."""
    out = tmp_path / "run"
    evalkit(out, "--policy", "faulty:KillsWorkers", "-w", "2")
    got = outcomes(out)
    killed = {k for k, v in got.items() if v[0] == "error"}
    assert "fake/1/0/0" in killed and len(killed) <= 2
    assert all("worker process died (killed by SIGKILL)" in errors(out)[k] for k in killed)
    assert_only_faulted(out, clean, {k: "error" for k in killed})


def test_ctrl_c_stops_at_once_and_says_how_to_resume(tmp_path, clean):
    out = tmp_path / "run"
    command = [sys.executable, "-m", "evalkit", "run", "--suite", "fake", "--episodes-per-task", "3", "--out",
               str(out), "--no-progress", "--policy", "faulty:Slow", "--policy-arg", "chunk_size=2", "-w", "2"]
    env = {**os.environ, "PYTHONPATH": str(HELPERS)}
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            start_new_session=True)
    deadline = time.time() + 60
    while time.time() < deadline and stored_count(out) < 2:
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does: the whole foreground group
    sent = time.time()
    _, stderr = proc.communicate(timeout=60)
    assert time.time() - sent < 15
    assert proc.returncode == 130
    assert f"of {EPISODES} episodes stored in {out}; re-run the same command to resume" in stderr
    assert "Traceback" not in stderr
    evalkit(out, "--policy", "faulty:Slow", "--policy-arg", "chunk_size=2", "-w", "2", env={"FAULTY_SLOW_S": "0"})
    assert outcomes(out) == clean




def test_retry_errors_runs_lost_episodes_again_and_compare_refuses_runs_with_errors(tmp_path, clean, capsys):
    out = tmp_path / "run"
    evalkit(out, "--policy", "faulty:Raises", "--policy-arg", "on=1/0,2/1")  # an outage, say
    assert {k for k, v in outcomes(out).items() if v[0] == "error"} == {"fake/1/0/0", "fake/2/1/1"}
    reference = tmp_path / "reference"
    evalkit(reference, "--policy", "faulty:Raises", "--policy-arg", "on=1/0,2/1", env={"FAULTY_OFF": "1"})

    assert main(["compare", str(reference), str(out)]) == 2
    assert "2 in the candidate" in capsys.readouterr().out
    assert main(["compare", str(reference), str(out), "--allow-errors"]) == 0  # 2 of 12 lost is not significant

    evalkit(out, "--policy", "faulty:Raises", "--policy-arg", "on=1/0,2/1", "--retry-errors", env={"FAULTY_OFF": "1"})
    assert outcomes(out) == clean
    with ResultStore(out, readonly=True) as store:  # nothing is lost: the replaced results are kept
        assert sorted(k for k, in store.db.execute("SELECT key FROM retried")) == ["fake/1/0/0", "fake/2/1/1"]
    assert main(["compare", str(reference), str(out)]) == 0


def fake_config(out, **kw):
    base = dict(suites=["fake"], policy="scripted-reach", policy_args={"chunk_size": 2}, episodes_per_task=1,
                out=str(out))
    return RunConfig.from_dict({**base, **kw})


@pytest.mark.parametrize("change, named", [
    ({"seed": 1}, "seed: stored 0, now 1"), ({"policy": "random"}, "policy: stored 'scripted-reach', now 'random'"),
    ({"policy_args": {"chunk_size": 3}}, "policy_args: stored {'chunk_size': '2'}, now {'chunk_size': '3'}"),
    ({"mode": "receding:1"}, "mode: stored 'open_loop', now 'receding:1'"),
    ({"preset": "nora"}, "protocol.name: stored 'openvla', now 'nora'"),
    ({"max_steps": 30}, "protocol.budget: stored None, now 30"),
    ({"budget_unit": "queries"}, "protocol.budget_unit: stored 'env_steps', now 'queries'"),
    ({"success_rule": "last"}, "protocol.success_rule: stored 'first', now 'last'"),
    ({"wait_steps": 3}, "protocol.wait_steps: stored 10, now 3"),
    ({"image_size": 128}, "image_size: stored 256, now 128"),
    ({"assets": "/elsewhere"}, "assets: stored 'default', now '/elsewhere'"),
], ids=lambda value: next(iter(value)) if isinstance(value, dict) else "")
def test_every_setting_that_changes_the_numbers_is_refused_on_resume(tmp_path, change, named):
    out = tmp_path / "run"
    execute(fake_config(out), progress=False)
    with pytest.raises(RunMismatch) as refused:
        execute(fake_config(out, **change), progress=False)
    assert named in str(refused.value)
    execute(fake_config(out, workers=2, episodes_per_task=2), progress=False)  # these do not change the numbers


def test_a_store_from_before_the_seed_was_in_the_identity_keeps_its_seed(tmp_path):
    out = tmp_path / "run"
    execute(fake_config(out, seed=3), progress=False)
    with ResultStore(out) as store:  # as an older evalkit wrote it
        identity = store.meta("identity")
        del identity["seed"]
        store.set_meta("identity", identity)
    execute(fake_config(out, seed=3), progress=False)
    with pytest.raises(RunMismatch, match="seed: stored 3, now 0"):
        execute(fake_config(out, seed=0), progress=False)


def test_a_second_run_on_a_directory_in_use_is_refused_with_the_writers_pid(tmp_path, capsys):
    out = tmp_path / "run"
    with RunLock(out):
        with pytest.raises(RunLocked, match=f"evalkit pid {os.getpid()} is writing to it"):
            execute(fake_config(out), progress=False)
        assert main(["run", "--suite", "fake", "--episodes-per-task", "1", "--out", str(out), "--no-progress"]) == 2
        assert "is in use" in capsys.readouterr().err
    execute(fake_config(out), progress=False)  # the lock went with its holder
    assert len(outcomes(out)) == 4


def test_two_processes_on_one_directory_one_waits_its_turn(tmp_path):
    """Started together, the second is refused by the lock, not by an IntegrityError halfway."""
    out = tmp_path / "run"
    env = {"FAULTY_SLOW_S": "0.05"}
    procs = [subprocess.Popen([sys.executable, "-m", "evalkit", "run", "--suite", "fake", "--episodes-per-task", "3",
                               "--out", str(out), "--no-progress", "--policy", "faulty:Slow"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": str(HELPERS), **env}) for _ in range(2)]
    results = [p.communicate(timeout=120) + (p.returncode,) for p in procs]
    codes = sorted(code for _, _, code in results)
    assert codes == [0, 2], results
    refused = next(err for _, err, code in results if code == 2)
    assert "is in use" in refused and "IntegrityError" not in refused
    assert len(outcomes(out)) == EPISODES


def test_a_corrupted_store_gets_a_message_not_a_traceback(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "results.sqlite").write_bytes(b"this is not a database" * 100)
    assert main(["run", "--suite", "fake", "--episodes-per-task", "1", "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "is not a readable evalkit results store" in err and "Traceback" not in err
    assert main(["report", str(out)]) == 2
    assert "is not a readable evalkit results store" in capsys.readouterr().err


def test_stale_in_flight_rows_of_a_killed_run_are_simply_run_again(tmp_path):
    """A run killed from outside leaves its in-flight rows; they are no one's fault."""
    out = tmp_path / "run"
    execute(fake_config(out), progress=False)
    with ResultStore(out) as store:
        episode = next(iter(store.results()))
        store.db.execute("DELETE FROM episodes WHERE key = ?", (episode.key,))
        store.db.commit()
        from suites.fake import fake_suite

        spec = next(ep for ep in fake_suite().episodes(episodes_per_task=1) if ep.key == episode.key)
        store.mark_started(spec, None)
        store.mark_phase([spec.key], "query", time.time() - 1)
    assert main(["run", "--suite", "fake", "--policy", "scripted-reach", "--policy-arg", "chunk_size=2",
                 "--episodes-per-task", "1", "--out", str(out), "--no-progress"]) == 0
    with ResultStore(out, readonly=True) as store:
        assert store.in_flight() == []
        assert {r.termination for r in store.results()} == {"success"}


def test_a_token_given_as_a_policy_argument_is_never_recorded(tmp_path):
    from evalkit.run.driver import provenance

    config = fake_config(tmp_path / "run", policy="remote", policy_args={"url": "ws://127.0.0.1:9", "token": "s3cret"})
    assert "token" not in config.identity()["policy_args"]
    sys_argv = sys.argv
    sys.argv = ["evalkit", "run", "--policy-arg", "token=s3cret"]
    try:
        assert "s3cret" not in str(provenance(config))
    finally:
        sys.argv = sys_argv


def test_a_policy_argument_given_as_a_flag_or_in_yaml_is_one_setting(tmp_path):
    out = tmp_path / "run"
    execute(fake_config(out, policy_args={"chunk_size": "2"}), progress=False)  # from --policy-arg chunk_size=2
    execute(fake_config(out, policy_args={"chunk_size": 2}, episodes_per_task=2), progress=False)  # from YAML
    assert len(outcomes(out)) == 8
