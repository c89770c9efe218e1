"""`evalkit compare`: paired tests on hand-worked counts, and the CI exit codes on real runs."""

import pytest

from evalkit.cli import main
from evalkit.results.compare import holm, mcnemar_exact
from evalkit.core.registry import register
from evalkit.run.driver import RunConfig, execute
from policies.weightfree.basic import ReachPolicy


def test_mcnemar_exact_hand_worked():
    assert mcnemar_exact(0, 0) == 1.0
    assert mcnemar_exact(10, 0) == pytest.approx(2 / 2**10)  # all 10 discordant pairs one way
    assert mcnemar_exact(3, 1) == pytest.approx(2 * (1 + 4) / 16)  # P(X<=1), X~Bin(4, 1/2), two-sided
    assert mcnemar_exact(5, 5) == 1.0


def test_holm_adjustment_hand_worked():
    # sorted 0.01, 0.02, 0.04 times 3, 2, 1 -> 0.03, 0.04, 0.04 (monotone)
    assert holm([0.04, 0.01, 0.02]) == pytest.approx([0.04, 0.03, 0.04])


class SabotagedReach(ReachPolicy):
    """The fake suite's solver, except that it holds still on tasks 1 and 3."""

    def act(self, obs, instruction):
        chunk = super().act(obs, instruction)
        return chunk * 0 if instruction.endswith(("1", "3")) else chunk


def run(tmp_path, name, policy, suites=("fake",), **kw):
    config = RunConfig.from_dict(dict(suites=list(suites), policy=policy, episodes_per_task=10,
                                      out=str(tmp_path / name), **kw))
    return str(execute(config, progress=False))


def test_exit_codes_for_a_ci_gate(tmp_path, capsys):
    register("policy", "test-sabotaged", "test_compare:SabotagedReach")
    baseline = run(tmp_path, "base", "scripted-reach")
    same = run(tmp_path, "same", "scripted-reach")
    worse = run(tmp_path, "worse", "test-sabotaged")
    other_suite = run(tmp_path, "other", "scripted-reach", suites=("fake_fragile",))
    other_protocol = run(tmp_path, "proto", "scripted-reach", preset="nora")

    assert main(["compare", baseline, same]) == 0
    assert "No significant regression" in capsys.readouterr().out

    out_file = tmp_path / "report.md"
    assert main(["compare", baseline, worse, "--out", str(out_file)]) == 1
    report = capsys.readouterr().out
    assert "fake task 1 (reach_target_1)" in report.split("## Per suite")[0]
    assert "fake task 3 (reach_target_3)" in report.split("## Per suite")[0]
    assert "reach_target_0" not in report.split("## Per suite")[0]
    assert out_file.read_text() + "\n" == report  # print adds the final newline
    assert main(["compare", baseline, worse, "--threshold", "100"]) == 0  # drops of exactly 100 pp do not exceed it
    capsys.readouterr()

    assert main(["compare", baseline, other_suite]) == 2
    assert "different suites" in capsys.readouterr().out
    assert main(["compare", baseline, other_protocol]) == 2
    assert "different protocols" in capsys.readouterr().out
    fewer = run(tmp_path, "fewer", "scripted-reach", tasks=[0, 1])
    assert main(["compare", baseline, fewer]) == 2
    assert "different episodes" in capsys.readouterr().out


def test_an_exported_baseline_compares_like_its_run(tmp_path, capsys):
    register("policy", "test-sabotaged", "test_compare:SabotagedReach")
    baseline = run(tmp_path, "base", "scripted-reach")
    exported = tmp_path / "baseline.jsonl"
    assert main(["export", baseline, str(exported)]) == 0
    assert "wrote 40 episodes" in capsys.readouterr().out
    assert main(["compare", str(exported), run(tmp_path, "same", "scripted-reach")]) == 0
    assert main(["compare", str(exported), run(tmp_path, "worse", "test-sabotaged")]) == 1
    assert main(["compare", str(exported), run(tmp_path, "proto", "scripted-reach", preset="nora")]) == 2
    (tmp_path / "junk.jsonl").write_text('{"key": 1}\n')
    assert main(["compare", str(tmp_path / "junk.jsonl"), baseline]) == 3  # bad input, not "not comparable"
    assert "not an evalkit export" in capsys.readouterr().err


def test_exit_codes_keep_0_1_2_for_verdicts_only(tmp_path, capsys, monkeypatch):
    import evalkit.results.compare as compare_module

    baseline = run(tmp_path, "base", "scripted-reach")
    assert main(["compare", baseline, str(tmp_path / "missing")]) == 3
    assert main(["compare", baseline, baseline, "--threshold", "nan"]) == 3
    assert main(["compare", baseline, baseline, "--alpha", "0"]) == 3
    empty = tmp_path / "empty.jsonl"
    main(["export", baseline, str(empty)])
    empty.write_text(empty.read_text().splitlines()[0] + "\n")  # the meta line, no episode
    capsys.readouterr()
    assert main(["compare", str(empty), str(empty)]) == 2
    assert "holds no episodes" in capsys.readouterr().out

    def broken(*args, **kwargs):
        raise KeyError("a bug")

    monkeypatch.setattr(compare_module, "pair_runs", broken)
    assert main(["compare", baseline, baseline]) == 4
    assert "internal error" in capsys.readouterr().err
