"""The Ray backend (issue 14) on a local Ray with this machine's CPUs, through the real CLI on the
fake suite: outcomes equal -w 1's, a killed driver resumes, a simulator actor killed mid-episode
costs nothing (the episode runs again elsewhere), a policy actor killed is restarted."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from evalkit.results.store import ResultStore
from helpers.runs import outcomes, stored_count

pytest.importorskip("ray")

HELPERS = Path(__file__).parent / "helpers"
EPISODES = 12


def evalkit(out, *flags, env=None, check=True):
    command = [sys.executable, "-m", "evalkit", "run", "--suite", "fake", "--episodes-per-task", "3", "--out",
               str(out), "--no-progress", *flags]
    environment = {**os.environ, "PYTHONPATH": str(HELPERS), "RAY_AUTH_MODE": "disabled", **(env or {})}
    proc = subprocess.run(command, capture_output=True, text=True, timeout=300, env=environment)
    if check:
        assert proc.returncode == 0, proc.stderr[-3000:]
    return proc




RAY = ["--backend", "ray", "-w", "2"]


@pytest.fixture(scope="module")
def local_runs(tmp_path_factory):
    """-w 1 runs: stateless policies (answered by a policy actor under Ray) and a stateful one (one
    instance in each simulator actor)."""
    root = tmp_path_factory.mktemp("local")
    runs = {}
    for name, flags in (("random", ["--policy", "random", "--policy-arg", "chunk_size=3"]),
                        ("reach", ["--policy", "scripted-reach", "--policy-arg", "chunk_size=2"]),
                        ("stateful", ["--policy", "faulty:Stateful"])):
        evalkit(root / name, *flags)
        runs[name] = (flags, outcomes(root / name))
    return runs


@pytest.mark.parametrize("policy", ["random", "reach", "stateful"])
def test_ray_outcomes_equal_one_local_worker(tmp_path, local_runs, policy):
    flags, expected = local_runs[policy]
    evalkit(tmp_path / "ray", *flags, *RAY)
    assert outcomes(tmp_path / "ray") == expected and len(expected) == EPISODES


def test_killing_the_driver_loses_only_episodes_in_flight(tmp_path, local_runs):
    flags, expected = local_runs["reach"]
    out = tmp_path / "ray"
    command = [sys.executable, "-m", "evalkit", "run", "--suite", "fake", "--episodes-per-task", "3", "--out", str(out),
               "--no-progress", "--policy", "faulty:Slow", "--policy-arg", "chunk_size=2", *RAY]
    env = {**os.environ, "PYTHONPATH": str(HELPERS), "RAY_AUTH_MODE": "disabled", "FAULTY_SLOW_S": "0.02"}
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
                            start_new_session=True)
    deadline = time.time() + 120
    while time.time() < deadline and stored_count(out) < 3:
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)  # the driver and its supervisor, with no chance to clean up
    proc.wait()
    assert 3 <= stored_count(out) < EPISODES
    evalkit(out, "--policy", "faulty:Slow", "--policy-arg", "chunk_size=2", *RAY, env={"FAULTY_SLOW_S": "0"})
    assert outcomes(out) == expected




def test_a_simulator_actor_killed_mid_episode_costs_nothing(tmp_path, local_runs):
    flags, expected = local_runs["reach"]
    proc = evalkit(tmp_path / "ray", *flags, *RAY, "--suite", "faulty:dying_suite",
                   env={"FAULTY_MARKER_DIR": str(tmp_path)})
    assert (tmp_path / "simulator-died").exists()  # it did die once
    assert "simulator actor lost" in proc.stderr and "running fake/1/0/0 again" in proc.stderr
    assert outcomes(tmp_path / "ray") == expected


def test_a_simulator_that_always_dies_is_recorded_after_the_retries(tmp_path, local_runs):
    flags, expected = local_runs["reach"]
    evalkit(tmp_path / "ray", *flags, *RAY, "--suite", "faulty:dying_suite", env={"FAULTY_ALWAYS": "1"})
    got = outcomes(tmp_path / "ray")
    assert got["fake/1/0/0"][0] == "error"
    assert {k: v for k, v in got.items() if k != "fake/1/0/0"} == {k: v for k, v in expected.items() if k != "fake/1/0/0"}
    with ResultStore(tmp_path / "ray", readonly=True) as store:
        error = next(r.error for r in store.results() if r.key == "fake/1/0/0")
    assert "its simulator actor died 3 times" in error  # the first try and episode_retries=2


def test_a_policy_actor_killed_is_restarted_and_its_queries_answered(tmp_path, local_runs):
    """A stateless policy lives in a policy actor; this one kills that actor's process once."""
    flags, expected = local_runs["random"]
    evalkit(tmp_path / "ray", "--policy", "faulty:RandomDiesOnce", "--policy-arg", "chunk_size=3", *RAY,
            env={"FAULTY_MARKER_DIR": str(tmp_path)})
    assert (tmp_path / "policy-died").exists()
    assert outcomes(tmp_path / "ray") == expected


def test_nothing_imports_ray_unless_the_backend_is_chosen(tmp_path):
    code = ("import sys\nfrom evalkit.run.driver import RunConfig, execute\n"
            f"execute(RunConfig.from_dict({{'suites': ['fake'], 'policy': 'random', 'episodes_per_task': 1, "
            f"'workers': 2, 'out': {str(tmp_path / 'run')!r}}}), progress=False)\n"
            "from evalkit import cli\ncli.main(['list'])\nassert 'ray' not in sys.modules, 'ray was imported'\n")
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, timeout=120)
