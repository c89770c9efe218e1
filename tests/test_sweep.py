"""`evalkit sweep`: grid expansion, resume, the table and the PNG."""

import importlib.util

import pytest

from evalkit.cli import main
from evalkit.run.driver import execute
from evalkit.results.store import ResultStore
from evalkit.run.sweep import expand

# only the table-and-plot tests need matplotlib; expansion and refusals run without it
needs_matplotlib = pytest.mark.skipif(importlib.util.find_spec("matplotlib") is None, reason="needs matplotlib")
# points without suites get the default one, libero_spatial, whose definition needs hf-libero
needs_libero = pytest.mark.skipif(importlib.util.find_spec("libero") is None, reason="needs hf-libero")

SWEEP = """
out: {out}
base:
  suites: [fake, fake_fragile]
  policy: scripted-reach
  episodes_per_task: 2
grid:
  mode: [open_loop, "receding:1"]
  policy_args.chunk_size: [1, 4]
"""


@needs_libero
def test_grid_expands_to_named_runs_with_the_swept_settings(tmp_path):
    out, points = expand({"out": str(tmp_path), "base": {"policy": "random", "policy_args": {"seed": 3}},
                          "grid": {"mode": ["open_loop", "receding:2"], "policy_args.chunk_size": [1, 5]}})
    assert [p.name for p in points] == ["mode=open_loop__policy_args.chunk_size=1", "mode=open_loop__policy_args.chunk_size=5",
                                        "mode=receding-2__policy_args.chunk_size=1", "mode=receding-2__policy_args.chunk_size=5"]
    assert points[3].config.mode == "receding:2" and points[3].config.policy_args == {"seed": 3, "chunk_size": 5}
    assert points[3].config.out == str(tmp_path / points[3].name)
    _, labelled = expand({"points": [{"label": "R_a", "policy_args": {"seed": 1}}, {"label": "R_g", "policy": "zero"}]})
    assert [(p.label, p.config.policy) for p in labelled] == [("R_a", "oracle"), ("R_g", "zero")]
    with pytest.raises(ValueError, match="exactly one of"):
        expand({"grid": {}, "points": []})


@needs_matplotlib
def test_sweep_resumes_and_writes_table_and_png(tmp_path, capsys):
    sweep_file = tmp_path / "sweep.yaml"
    sweep_file.write_text(SWEEP.format(out=tmp_path / "sweep"))
    _, points = expand(__import__("yaml").safe_load(sweep_file.read_text()))
    execute(points[0].config, progress=False)  # as if the sweep had been interrupted after one point
    assert main(["sweep", str(sweep_file), "--no-progress"]) == 0
    output = capsys.readouterr().out
    sessions = ResultStore(points[0].config.out_dir(), readonly=True).sessions()
    assert len(sessions) == 2  # the finished point was opened again but ran nothing
    assert "| point | fake | fake_fragile |" in output
    assert "mode=receding:1, policy_args.chunk_size=4 | 100.0 [" in output  # fake: solved at every point
    png = (tmp_path / "sweep" / "sweep.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 5000
    assert (tmp_path / "sweep" / "sweep.md").read_text().count("\n") == 2 + len(points)


@needs_matplotlib
def test_plot_tolerates_wilson_bounds_rounding_past_the_rate(tmp_path):
    from evalkit.run.sweep import plot_sweep

    _, points = expand({"grid": {"mode": ["open_loop", "receding:1"]}})
    rates = {"fake": {points[0].name: (0.0, 1e-17, 0.28, 10), points[1].name: (1.0, 0.72, 1.0 - 1e-16, 10)}}
    assert plot_sweep(points, rates, tmp_path / "p.png").read_bytes().startswith(b"\x89PNG")


REWARD_VARIANT_SWEEP = """
out: {out}
base:
  suites: [fake]
  policy: scripted-reach
  preset: nora        # the budget counts queries: 1 query runs one chunk of chunk_size steps
  max_steps: 1
  wait_steps: 0
  episodes_per_task: 2
points:               # chunk_size stands for the checkpoint: long chunks reach the target, 1 step does not
  - {{group: R_a, label: ra-ckpt1, policy_args: {{chunk_size: 40}}}}
  - {{group: R_g_sub, label: rg-ckpt1, policy_args: {{chunk_size: 1}}}}
  - {{group: R_a, label: ra-ckpt2, policy_args: {{chunk_size: 35}}}}
"""


@needs_matplotlib
def test_reward_variant_sweep_groups_checkpoints_by_variant(tmp_path, capsys):
    sweep_file = tmp_path / "variants.yaml"
    sweep_file.write_text(REWARD_VARIANT_SWEEP.format(out=tmp_path / "sweep"))
    assert main(["sweep", str(sweep_file), "--no-progress"]) == 0
    table = (tmp_path / "sweep" / "sweep.md").read_text().splitlines()
    assert table[0] == "| group | point | fake |"
    # rows grouped by variant in order of first appearance; Wilson 95% lower bound of n/n is n/(n+1.96^2)
    assert [row.split(" | ")[:2] for row in table[2:]] == [["| R_a", "ra-ckpt1"], ["| R_a", "ra-ckpt2"],
                                                           ["| R_a", "pooled"], ["| R_g_sub", "rg-ckpt1"]]
    assert "| ra-ckpt2 | 100.0 [67.6, 100.0] (n=8) |" in table[3]  # 8 / 11.84
    assert "| pooled | 100.0 [80.6, 100.0] (n=16) |" in table[4]  # 16 / 19.84
    assert "| rg-ckpt1 | 0.0 [0.0, 32.4] (n=8) |" in table[5]  # one 5 cm step reaches no target
    _, points = expand(__import__("yaml").safe_load(sweep_file.read_text()))
    assert [(p.group, p.name, p.config.policy_args) for p in points][1] == ("R_g_sub", "rg-ckpt1", {"chunk_size": 1})


@pytest.mark.parametrize("spec, expected", [
    # a bare string would be swept character by character (seeds "1" and "2")
    ({"grid": {"policy_args.seed": "12"}}, "grid key 'policy_args.seed' must be a list of values; got '12' (str)"),
    ({"grid": {"mode": []}}, "grid key 'mode' has no values"),
    ({"grid": {}}, "sweep 'grid' must map settings to lists of values"),  # one point: the sweep root itself
    ({"points": [{"label": ".."}]}, "label '..' cannot name a folder inside the sweep directory"),
    ({"points": [{"label": "."}]}, "label '.' cannot name a folder"),
    ({"points": []}, "sweep 'points' must be a non-empty list of mappings"),
    ({"points": ["a"]}, "sweep 'points' must be a non-empty list of mappings"),
    ({"base": ["policy"], "grid": {"seed": [1]}}, "sweep 'base' must be a mapping"),
    ({"grid": {"policy_args": ["chunk_size=2"]}}, "a sweep point's policy_args must be a mapping"),
    ({"grid": {"seed": [1, 1.5]}}, "run setting 'seed' must be an integer >= 0; got 1.5"),
])
def test_malformed_sweeps_are_refused_before_any_run(tmp_path, spec, expected):
    with pytest.raises(ValueError, match=None) as caught:
        expand({"out": str(tmp_path / "sweep"), "base": {"suites": ["fake"], "policy": "random"}, **spec})
    assert expected in str(caught.value)
    assert not (tmp_path / "sweep").exists()


def test_a_malformed_sweep_file_is_an_error_message(tmp_path, capsys):
    sweep_file = tmp_path / "sweep.yaml"
    sweep_file.write_text(f"out: {tmp_path / 'sweep'}\nbase: {{suites: [fake], policy: random}}\n"
                          "grid: {policy_args.seed: \"12\"}\n")
    assert main(["sweep", str(sweep_file), "--no-progress"]) == 2
    assert "grid key 'policy_args.seed' must be a list" in capsys.readouterr().err
    assert not (tmp_path / "sweep").exists()
