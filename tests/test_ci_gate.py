"""scripts/ci_gate.sh on the fake suite: every call evaluates from scratch (a checkpoint changed at
the same path is evaluated again), and a failed `evalkit run` exits 4, never as a regression."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from evalkit.run.driver import RunConfig, execute
from evalkit.results.store import export_run

ROOT = Path(__file__).resolve().parent.parent
EVALKIT = Path(sys.executable).with_name("evalkit")  # the venv's console script, next to this python

# A policy whose behaviour comes from the content of its checkpoint file, as a real one's does.
CHECKPOINT_POLICY = '''
from pathlib import Path

from policies.weightfree.basic import ReachPolicy


class CheckpointPolicy(ReachPolicy):
    """Reaches the target when its checkpoint file says "good"; stands still otherwise."""

    def __init__(self, checkpoint: str = ""):
        super().__init__()
        self.good = Path(checkpoint).read_text().strip() == "good"

    def act(self, obs, instruction):
        chunk = super().act(obs, instruction)
        if not self.good:
            chunk[:, :2] = 0.0
        return chunk
'''

pytestmark = pytest.mark.skipif(not EVALKIT.exists(), reason=f"no evalkit console script at {EVALKIT}")


@pytest.fixture
def gate(tmp_path, monkeypatch):
    """(run, checkpoint): run(*flags, OUT=...) calls ci_gate.sh on fake tasks 0-3 x 2 init states
    against a baseline of the "good" checkpoint; write the checkpoint file to change the candidate."""
    (tmp_path / "gate_policies").mkdir()
    (tmp_path / "gate_policies" / "ckpt_policy.py").write_text(CHECKPOINT_POLICY)
    monkeypatch.syspath_prepend(str(tmp_path / "gate_policies"))
    checkpoint = tmp_path / "model.ckpt"
    checkpoint.write_text("good")
    policy = ["--policy", "ckpt_policy:CheckpointPolicy", "--policy-arg", f"checkpoint={checkpoint}"]
    subset = ["--suite", "fake", "--tasks", "0,1,2,3", "--workers", "1"]
    baseline_run = execute(RunConfig.from_dict({
        "suites": ["fake"], "tasks": [0, 1, 2, 3], "episodes_per_task": 2, "policy": "ckpt_policy:CheckpointPolicy",
        "policy_args": {"checkpoint": str(checkpoint)}, "out": str(tmp_path / "baseline_run")}), progress=False)
    baseline = tmp_path / "baseline.jsonl"
    export_run(baseline_run, baseline)

    def run(*flags, **env):
        environ = {k: v for k, v in os.environ.items() if k not in ("OUT", "THRESHOLD")}
        environ.update(BASELINE=str(baseline), EVALKIT=str(EVALKIT), **env,
                       PYTHONPATH=os.pathsep.join([str(tmp_path / "gate_policies"), os.environ.get("PYTHONPATH", "")]))
        return subprocess.run(["bash", str(ROOT / "scripts" / "ci_gate.sh"), *subset, *policy, *flags], cwd=ROOT,
                              env=environ, capture_output=True, text=True, timeout=300)

    return run, checkpoint


def test_a_checkpoint_changed_at_the_same_path_is_evaluated_again(gate, tmp_path):
    run, checkpoint = gate
    out = tmp_path / "candidate"
    first = run(OUT=str(out))
    assert first.returncode == 0, first.stderr
    assert "No significant regression" in first.stdout and (out / "compare.md").exists()
    checkpoint.write_text("bad")  # same path, same flags, other weights
    second = run(OUT=str(out))
    assert "already done" not in second.stderr  # not resumed from the first candidate's episodes
    assert second.returncode == 1, second.stdout + second.stderr
    assert "Regression" in (out / "compare.md").read_text()


def test_a_failed_run_exits_4_and_is_not_reported_as_a_regression(gate, tmp_path):
    run, checkpoint = gate
    checkpoint.unlink()  # the candidate cannot even be built
    result = run(OUT=str(tmp_path / "candidate"))
    assert result.returncode == 4, result.stdout + result.stderr
    assert "evalkit failed" in result.stderr and "evalkit run` exited with" in result.stderr
    assert not (tmp_path / "candidate" / "compare.md").exists()


def test_an_earlier_run_at_out_is_replaced_and_anything_else_is_left_alone(gate, tmp_path):
    run, checkpoint = gate
    stale = tmp_path / "stale"  # a finished run of the good checkpoint, made by evalkit itself
    result = subprocess.run([str(EVALKIT), "run", "--suite", "fake", "--tasks", "0,1,2,3", "--episodes-per-task", "2",
                             "--policy", "ckpt_policy:CheckpointPolicy", "--policy-arg", f"checkpoint={checkpoint}",
                             "--out", str(stale), "--no-progress"], cwd=ROOT, capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(tmp_path / "gate_policies")})
    assert result.returncode == 0, result.stderr
    checkpoint.write_text("bad")
    replaced = run(OUT=str(stale))
    assert "deleting the earlier candidate run" in replaced.stderr and "already done" not in replaced.stderr
    assert replaced.returncode == 1, replaced.stdout + replaced.stderr
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep me")
    refused = run(OUT=str(precious))
    assert refused.returncode == 3 and "neither empty nor an evalkit run directory" in refused.stderr
    assert (precious / "notes.txt").read_text() == "keep me"
    with_out = run("--out", str(tmp_path / "elsewhere"))
    assert with_out.returncode == 3 and "OUT=" in with_out.stderr


def test_without_out_the_candidate_goes_to_a_new_directory(gate):
    run, _ = gate
    result = run()
    made = re.search(r"candidate run in (\S+)", result.stderr)
    try:
        assert result.returncode == 0, result.stdout + result.stderr
        assert made and made.group(1).startswith("runs/ci-gate.")
        assert (ROOT / made.group(1) / "compare.md").exists()
    finally:
        if made and made.group(1).startswith("runs/ci-gate."):
            shutil.rmtree(ROOT / made.group(1), ignore_errors=True)
