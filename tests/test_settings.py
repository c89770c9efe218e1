"""Run settings are checked before the run directory exists; policy arguments are typed once
(issue 12, items 7, 8 and 11)."""

import os
from pathlib import Path
from typing import Literal, Optional

import pytest

from evalkit.core import settings
from evalkit.cli import main
from evalkit.core.execution import parse_mode
from evalkit.core.registry import make_policy, register
from evalkit.run.driver import RunConfig
from evalkit.core.settings import SettingError, coerce_policy_args

RUN = ["run", "--suite", "fake", "--policy", "random", "--episodes-per-task", "1", "--no-progress"]


def refused(capsys, tmp_path, *args, config: str = "") -> str:
    """Runs `evalkit run` expecting exit 2 and no run directory; returns the error text."""
    extra = []
    if config:
        (tmp_path / "run.yaml").write_text(config)
        extra = ["--config", str(tmp_path / "run.yaml")]
    out = tmp_path / "run"
    assert main([*RUN, "--out", str(out), *extra, *args]) == 2
    assert not out.exists(), "a refused run must not create its directory"
    return capsys.readouterr().err


@pytest.mark.parametrize("args, config, expected", [
    ((), "seed: 1.5\n", "'seed' must be an integer >= 0; got 1.5 (float)"),
    (("--workers", "0"), "", "'workers' must be an integer >= 1; got 0"),
    (("--workers", "-1"), "", "'workers' must be an integer >= 1; got -1"),
    (("--episodes-per-task", "-3"), "", "'episodes_per_task' must be an integer >= 1; got -3"),
    ((), 'video: "no"\n', "'video' must be true or false"),
    (("--policy-arg", "chunk_size=0"), "", "'chunk_size' must be >= 1"),
    (("--policy-arg", "chunk_size=-2"), "", "'chunk_size' must be >= 1"),
    (("--tasks", "0,0"), "", "'tasks' repeats 0"),
    (("--tasks", "0,7"), "", "fake has tasks 0..3; got [7]"),
    (("--tasks", "0,x"), "", "'tasks' must be task ids separated by commas"),
    (("--mode", "ensemble:nan"), "", "'mode': execution mode 'ensemble:nan': ensemble:TEMP needs a finite"),
    (("--mode", "ensemble:-1000"), "", "'mode': execution mode 'ensemble:-1000'"),
    (("--mode", "receding:0"), "", "receding:K needs K"),
])
def test_bad_settings_are_named_before_the_run_directory_exists(tmp_path, capsys, args, config, expected):
    assert expected in refused(capsys, tmp_path, *args, config=config)


def test_yaml_values_must_have_the_setting_type():
    base = {"suites": ["fake"], "policy": "random"}
    for key, value, expected in [("render_all", "yes", "true or false"), ("seed", True, "an integer"),
                                 ("image_size", "256", "an integer"), ("suites", [], "a list of suite names"),
                                 ("policy_args", "chunk_size=5", "a mapping"),
                                 ("tasks", [0, -1], "a non-empty list of task ids >= 0")]:
        with pytest.raises(SettingError, match=f"'{key}' must be {expected}"):
            RunConfig.from_dict({**base, key: value})
    assert RunConfig.from_dict({**base, "tasks": "0,2"}).tasks == [0, 2]  # a YAML string, as the flag
    assert RunConfig.from_dict({**base, "tasks": 3}).tasks == [3]
    with pytest.raises(SettingError, match="'suites' repeats fake"):
        RunConfig(suites=["fake", "fake"])


def test_out_that_names_a_file_or_an_unwritable_directory(tmp_path, capsys, monkeypatch):
    (tmp_path / "file").write_text("x")
    assert main([*RUN, "--out", str(tmp_path / "file")]) == 2
    assert "is an existing file, not a directory" in capsys.readouterr().err
    assert main([*RUN, "--out", str(tmp_path / "file" / "run")]) == 2
    assert "is a file, so the directory cannot be created there" in capsys.readouterr().err
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    if os.geteuid() == 0:  # root writes anywhere: stand for the permission check it would fail as a user
        real = os.access
        monkeypatch.setattr(settings.os, "access", lambda p, mode: Path(p) != locked and real(p, mode))
    try:
        assert main([*RUN, "--out", str(locked / "run")]) == 2
        assert f"cannot be created: {locked} is not writable" in capsys.readouterr().err
        assert main([*RUN, "--out", str(locked)]) == 2
        assert "is not writable" in capsys.readouterr().err
    finally:
        locked.chmod(0o755)
    assert not (locked / "run").exists()


def test_modes_refuse_non_finite_or_absurd_parameters():
    for bad in ("ensemble:nan", "ensemble:inf", "ensemble:-1000", "ensemble:11"):
        with pytest.raises(ValueError, match="finite temperature within"):
            parse_mode(bad)
    for bad in ("receding:0", "receding:-3"):
        with pytest.raises(ValueError, match="integer >= 1"):
            parse_mode(bad)
    assert parse_mode("ensemble:-10") == ("ensemble", -10.0)


# -- policy arguments --------------------------------------------------------------------------

class Typed:
    """A constructor with one argument of each kind coerce_policy_args parses."""

    def __init__(self, flag: bool = False, count: int = 1, scale: float = 1.0, name: str = "",
                 limit: Optional[int] = None, key: Optional[str] = None, path: Optional[Path] = None,
                 cameras: tuple[str, ...] = (), sizes: list[int] = (), rule: Literal["a", "b"] = "a", untyped=2.5):
        self.__dict__.update(locals())


register("policy", "test-flagged", "tests.test_settings:Typed")


def test_policy_arguments_are_typed_from_the_constructor_signature():
    policy = make_policy("test-flagged", {
        "flag": "false", "count": "3", "scale": "0.5", "name": 2024, "limit": "none", "key": "none",
        "path": "a/b", "cameras": "agentview, wrist", "sizes": "1,2", "rule": "b", "untyped": "4"})
    assert policy.flag is False  # the string "false" is truthy: this was the bug
    assert (policy.count, policy.scale, policy.name, policy.limit, policy.key) == (3, 0.5, "2024", None, "none")
    assert policy.path == Path("a/b") and policy.cameras == ("agentview", "wrist") and policy.sizes == [1, 2]
    assert policy.rule == "b" and policy.untyped == 4.0  # unannotated: the default's type
    for text in ("true", "TRUE", "Yes", "1", "on"):
        assert make_policy("test-flagged", {"flag": text}).flag is True
    for text in ("False", "no", "0", "off"):
        assert make_policy("test-flagged", {"flag": text}).flag is False
    assert make_policy("test-flagged", {"flag": True, "count": 4, "limit": 7}).count == 4  # YAML values kept


@pytest.mark.parametrize("args, expected", [
    ({"flag": "nope"}, "'flag' must be true or false (also yes/no, 1/0); got 'nope'"),
    ({"count": "1.5"}, "'count' must be an integer; got '1.5'"),
    ({"count": True}, "'count' must be an integer; got True"),
    ({"scale": "nan"}, "'scale' must be a finite number; got 'nan'"),
    ({"limit": "many"}, "'limit' must be an integer or none; got 'many'"),
    ({"rule": "c"}, "'rule' must be one of 'a', 'b'; got 'c'"),
    ({"sizes": "1,x"}, "'sizes'[1] must be an integer; got 'x'"),
    ({"flg": "true"}, "has no argument 'flg' (did you mean 'flag'?); it accepts: flag, count, scale"),
])
def test_a_policy_argument_that_does_not_fit_is_named(args, expected):
    with pytest.raises(SettingError) as caught:
        make_policy("test-flagged", args)
    assert "policy 'test-flagged'" in str(caught.value) and expected in str(caught.value)


def test_chunk_sizes_below_one_are_refused_at_construction():
    for value in ("0", "-1", 0):
        with pytest.raises(SettingError, match="policy 'random' argument 'chunk_size' must be >= 1"):
            make_policy("random", {"chunk_size": value})
    assert make_policy("random", {"chunk_size": "4", "scale": "0.5"}).spec.chunk_size == 4
    assert make_policy("oracle", {"chunk_size": "2", "rim_radius": "0.05"}).tuning.rim_radius == 0.05  # **tuning


def test_nora_and_world_model_flags_arrive_as_bools():
    from evalkit.posttrain.world_models import load_vjepa2_ac
    from policies.nora.nora import NoraLongPolicy, NoraPolicy

    assert coerce_policy_args(NoraPolicy, {"respect_mask": "false"}) == {"respect_mask": False}
    typed = coerce_policy_args(NoraLongPolicy, {"respect_mask": "true", "time_horizon": "3", "max_new_tokens": "none"})
    assert typed == {"respect_mask": True, "time_horizon": 3, "max_new_tokens": None}  # through **kwargs
    with pytest.raises(SettingError, match="has no argument 'respect'"):
        coerce_policy_args(NoraLongPolicy, {"respect": "true"}, "policy 'nora-long'")
    assert coerce_policy_args(load_vjepa2_ac, {"normalize_reps": "false"}) == {"normalize_reps": False}
