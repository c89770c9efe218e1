"""The registry: "module:attr" names, entry points of installed packages, re-registration, `evalkit list`."""

import copy
import os
import subprocess
import sys
from importlib.metadata import EntryPoint

import pytest

from evalkit.cli import main
from evalkit.core import registry
from evalkit.run.driver import RunConfig, execute
from policies.weightfree.basic import ZeroPolicy


class Documented:
    """A plugin policy with a docstring.

    Only the first line is shown by `evalkit list`."""


class FakeInstall:
    """Entry points of pretend installed packages; `calls` counts how often they were read."""

    def __init__(self):
        self.points: list[EntryPoint] = []
        self.calls = 0

    def add(self, name: str, value: str, group: str = "evalkit.policies") -> None:
        self.points.append(EntryPoint(name, value, group))

    def entry_points(self, group: str) -> list[EntryPoint]:
        self.calls += 1
        return [point for point in self.points if point.group == group]


def isolate_registry(monkeypatch) -> None:
    """A registry of the test's own, entry points not yet read; restored after the test."""
    monkeypatch.setattr(registry, "REGISTRY", copy.deepcopy(registry.REGISTRY))
    monkeypatch.setattr(registry, "_plugins_read", set())
    monkeypatch.setattr(registry, "_ORIGINS", {})
    monkeypatch.setattr(registry, "_CONFLICTS", {})


@pytest.fixture
def plugins(monkeypatch):
    install = FakeInstall()
    isolate_registry(monkeypatch)
    monkeypatch.setattr(registry, "entry_points", install.entry_points)
    return install


# -- "module:attr" names ----------------------------------------------------------------------------


def test_module_attr_names_stand_for_themselves():
    assert registry.target("policy", "my_pkg.module:MyPolicy") == "my_pkg.module:MyPolicy"
    assert isinstance(registry.make_policy("policies.weightfree.basic:ZeroPolicy", {"chunk_size": "2"}), ZeroPolicy)
    suite = registry.make_suite("suites.fake:fake_suite")
    assert suite.name == "suites.fake:fake_suite" and len(suite.tasks) == 4
    assert registry.load("policy", "policies.weightfree.basic:ZeroPolicy.reset") is ZeroPolicy.reset  # dotted attr


def test_a_run_takes_module_attr_policy_and_suite(tmp_path):
    config = RunConfig.from_dict(dict(suites=["suites.fake:fake_suite"], policy="policies.weightfree.basic:ReachPolicy",
                                      tasks="0", episodes_per_task=1, out=str(tmp_path / "run")))
    execute(config, progress=False)
    assert (tmp_path / "run").is_dir()


def test_unknown_names_suggest_close_ones():
    with pytest.raises(registry.UnknownNameError, match="Did you mean 'random'"):
        registry.target("policy", "randm")


# -- register() --------------------------------------------------------------------------------------


def test_registering_a_name_again(plugins):
    registry.register("policy", "mine", "policies.weightfree.basic:ZeroPolicy")
    registry.register("policy", "mine", "policies.weightfree.basic:ZeroPolicy")  # same target: nothing happens
    with pytest.raises(ValueError, match="'mine' is registered twice.*RandomPolicy"):
        registry.register("policy", "mine", "policies.weightfree.basic:RandomPolicy")
    with pytest.raises(ValueError, match="registered twice"):
        registry.register("policy", "zero", "my_pkg:Zero")  # a built-in name
    with pytest.raises(ValueError, match="module:attr"):
        registry.register("policy", "other", "my_pkg.Zero")
    assert registry.target("policy", "mine") == "policies.weightfree.basic:ZeroPolicy"
    assert registry.origin_of("policy", "mine") == "registered at runtime"


# -- entry points ------------------------------------------------------------------------------------


def test_entry_points_register_names_lazily(plugins):
    plugins.add("my-zero", "policies.weightfree.basic:ZeroPolicy")
    plugins.add("my-fake", "suites.fake:fake_suite", "evalkit.suites")
    assert plugins.calls == 0  # nothing read before a name is wanted
    assert "my-zero" in registry.names("policy")
    assert isinstance(registry.make_policy("my-zero"), ZeroPolicy)
    assert registry.make_suite("my-fake").name == "my-fake"
    calls = plugins.calls
    registry.names("policy"), registry.target("suite", "my-fake")
    assert plugins.calls == calls  # read once per kind
    assert registry.origin_of("policy", "my-zero") == "entry point evalkit.policies"


def test_entry_points_through_importlib_metadata(monkeypatch):
    """The registry reads importlib.metadata.entry_points(group=...) itself."""
    point = EntryPoint("via-metadata", "policies.weightfree.basic:ZeroPolicy", "evalkit.policies")
    isolate_registry(monkeypatch)
    monkeypatch.setattr(registry.metadata, "entry_points",
                        lambda group: [point] if group == "evalkit.policies" else [])
    assert registry.target("policy", "via-metadata") == "policies.weightfree.basic:ZeroPolicy"


def test_conflicting_entry_points_make_the_name_unusable(plugins):
    plugins.add("zero", "my_pkg.policy:Zero")  # clashes with the built-in
    plugins.add("dup", "policies.weightfree.basic:ZeroPolicy")
    plugins.add("dup", "policies.weightfree.basic:RandomPolicy")
    plugins.add("same", "policies.weightfree.basic:ZeroPolicy")
    plugins.add("same", "policies.weightfree.basic:ZeroPolicy")  # the same target twice is fine
    plugins.add("no-attr", "my_pkg.policy")
    for name, message in (("zero", "registered twice"), ("dup", "registered twice"), ("no-attr", "module:attr")):
        with pytest.raises(ValueError, match=message):
            registry.make_policy(name)
        assert name in registry.names("policy")
        assert registry.describe("policy", name).startswith("(unusable: ")
    assert isinstance(registry.make_policy("same"), ZeroPolicy)
    assert isinstance(registry.make_policy("random").spec.chunk_size, int)  # the other names still work


# -- descriptions and `evalkit list` -----------------------------------------------------------------


def test_every_builtin_name_has_a_one_line_description():
    for kind in registry.REGISTRY:
        for name in registry.names(kind):
            if registry.target(kind, name).split(".")[-1].startswith("test_"):  # registered by another test module
                continue
            text = registry.describe(kind, name)
            assert text and "\n" not in text and not text.startswith("("), (kind, name, text)


def test_describing_builtins_imports_nothing_heavy():
    code = ("import sys; from evalkit.core import registry\n"
            "[registry.describe(k, n) for k in registry.REGISTRY for n in registry.names(k)]\n"
            "print([m for m in ('torch', 'transformers', 'policies.nora.nora', 'suites.libero.suite', "
            "'suites.simpler.suite', 'policies.weightfree.basic') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_plugins_are_described_by_their_docstring(plugins):
    plugins.add("documented", f"{__name__}:Documented")
    plugins.add("needs-torch", "my_missing_pkg_for_tests.policy:Big")
    assert registry.describe("policy", "documented") == "A plugin policy with a docstring."
    assert registry.describe("policy", "needs-torch") == (
        "(not importable here: ModuleNotFoundError: No module named 'my_missing_pkg_for_tests')")
    assert registry.describe("policy", "policies.weightfree.basic:RandomPolicy").startswith("Uniform actions")


def test_list_aligns_long_names_and_describes_each(plugins, capsys):
    long_name = "a-very-long-policy-name-from-a-plugin-package"
    plugins.add(long_name, f"{__name__}:Documented")
    assert main(["list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    entries = [line for line in lines if line.startswith("  ")]
    column = 2 + len(long_name) + 2  # where every description starts
    assert all(line[column - 2:column] == "  " and line[column] != " " for line in entries), lines
    assert f"  {long_name}  A plugin policy with a docstring.  [entry point evalkit.policies]" in lines
    zero = next(line for line in entries if line.split()[0] == "zero")
    assert zero[column:] == "holds still, gripper open"
    assert {"suites:", "policies:", "protocol presets:", "world models (evalkit pairs):"} <= set(lines)


def test_an_installed_distribution_registers_its_names(tmp_path):
    """The real importlib.metadata path: a distribution on sys.path with an entry_points.txt."""
    (tmp_path / "my_plugin_for_tests.py").write_text('class Policy:\n    """My own policy."""\n')
    info = tmp_path / "my_plugin_for_tests-1.2.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: my-plugin-for-tests\nVersion: 1.2\n")
    (info / "entry_points.txt").write_text("[evalkit.policies]\nmine = my_plugin_for_tests:Policy\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-m", "evalkit.cli", "list"], capture_output=True, text=True, env=env,
                         check=True).stdout
    assert "  mine " in out and "My own policy.  [entry point evalkit.policies of my-plugin-for-tests 1.2]" in out
