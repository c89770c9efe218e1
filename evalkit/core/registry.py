"""One registry for everything chosen by name: policies, suites, protocol presets.

Entries are lazy "module:attr" targets so that `evalkit list` imports neither
torch nor a simulator; a target is imported only when it is built.

Other packages add names through entry points (`[project.entry-points."evalkit.policies"]
mypolicy = "my_pkg.policy:MyPolicy"`, groups in ENTRY_POINT_GROUPS), read the first time a kind's
names are listed or looked up. A name registered twice with different targets is an error.
"""

from __future__ import annotations

import difflib
import functools
import importlib
from importlib import metadata
from typing import Any

REGISTRY: dict[str, dict[str, str]] = {
    "policy": {
        "zero": "policies.weightfree.basic:ZeroPolicy",
        "random": "policies.weightfree.basic:RandomPolicy",
        "replay": "policies.weightfree.basic:ReplayPolicy",
        "oracle": "policies.weightfree.oracle:OraclePolicy",
        "scripted-reach": "policies.weightfree.basic:ReachPolicy",
        "nora": "policies.nora.nora:NoraPolicy",
        "nora-long": "policies.nora.nora:NoraLongPolicy",
        "nora-1.5": "policies.nora.nora15:Nora15Policy",
        "remote": "policies.remote:RemotePolicy",  # a policy behind `evalkit serve`
        "openvla": "policies.vla.openvla:OpenVLAPolicy",
        "spatialvla": "policies.vla.spatialvla:SpatialVLAPolicy",
        "pi0": "policies.vla.pi0:OpenPIPolicy",  # pi0 behind an openpi policy server
        "pi0-lerobot": "policies.vla.pi0:LeRobotPI0Policy",
    },
    "suite": {
        # a suite target is a factory called with the suite's name
        "libero_spatial": "suites.libero.suite:libero_suite",
        "libero_object": "suites.libero.suite:libero_suite",
        "libero_goal": "suites.libero.suite:libero_suite",
        "libero_10": "suites.libero.suite:libero_suite",
        "libero_90": "suites.libero.suite:libero_suite",
        "fake": "suites.fake:fake_suite",
        # SimplerEnv (suites/simpler/suite.py); *_rasterized: drawers without ray tracing (a recorded deviation)
        "simpler_google_vm": "suites.simpler.suite:simpler_suite",
        "simpler_google_va": "suites.simpler.suite:simpler_suite",
        "simpler_coke_can_vm": "suites.simpler.suite:simpler_suite",
        "simpler_coke_can_va": "suites.simpler.suite:simpler_suite",
        "simpler_move_near_vm": "suites.simpler.suite:simpler_suite",
        "simpler_move_near_va": "suites.simpler.suite:simpler_suite",
        "simpler_drawer_vm": "suites.simpler.suite:simpler_suite",
        "simpler_drawer_va": "suites.simpler.suite:simpler_suite",
        "simpler_bridge": "suites.simpler.suite:simpler_suite",
        "simpler_spoon_on_towel": "suites.simpler.suite:simpler_suite",
        "simpler_carrot_on_plate": "suites.simpler.suite:simpler_suite",
        "simpler_stack_cube": "suites.simpler.suite:simpler_suite",
        "simpler_eggplant_in_basket": "suites.simpler.suite:simpler_suite",
        "simpler_google_vm_rasterized": "suites.simpler.suite:simpler_suite",
        "simpler_google_va_rasterized": "suites.simpler.suite:simpler_suite",
        "simpler_drawer_vm_rasterized": "suites.simpler.suite:simpler_suite",
        "simpler_drawer_va_rasterized": "suites.simpler.suite:simpler_suite",
        "fake_fragile": "suites.fake:fake_suite",
    },
    "preset": {
        "openvla": "evalkit.core.protocol:OPENVLA",
        "nora": "evalkit.core.protocol:NORA",
        "simpler": "evalkit.core.protocol:SIMPLER",
        "simpler_any_step": "evalkit.core.protocol:SIMPLER_ANY_STEP",
    },
    "world_model": {
        # for the NORA-1.5 goal reward (evalkit.posttrain.rewards, `evalkit pairs`)
        "tiny": "evalkit.posttrain.rewards:TinyWorldModel",
        "vjepa2-ac": "evalkit.posttrain.world_models:load_vjepa2_ac",
    },
}

# One line per built-in name for `evalkit list`, kept here so that listing imports nothing;
# other names (entry points, register()) are described by their target's docstring.
_SIMPLER_GOOGLE = "SimplerEnv Google robot"
DESCRIPTIONS: dict[str, dict[str, str]] = {
    "policy": {
        "zero": "holds still, gripper open",
        "random": "uniform actions seeded by (seed, episode, step)",
        "replay": "plays an action file (path=actions.npy, shape (T, 7))",
        "oracle": "scripted libero_spatial pick-and-place from simulator object poses (privileged)",
        "scripted-reach": "the fake suite's scripted solver (privileged)",
        "nora": "NORA (Qwen2.5-VL-3B + FAST+ tokens), checkpoint=",
        "nora-long": "NORA-LONG, horizon 5, checkpoint=",
        "nora-1.5": "NORA-1.5 flow-matching action expert over NORA-LONG, checkpoint=",
        "remote": "a policy served by `evalkit serve`, url=ws://HOST:PORT",
        "openvla": "OpenVLA through transformers' remote code, checkpoint=",
        "spatialvla": "SpatialVLA (remote code), checkpoint=",
        "pi0": "pi0 (or any openpi model) behind openpi's policy server, url=",
        "pi0-lerobot": "LeRobot's PI0Policy in-process (needs lerobot[pi0]), checkpoint=",
    },
    "suite": {
        "libero_spatial": "LIBERO-Spatial: 10 tasks x 50 init states",
        "libero_object": "LIBERO-Object: 10 tasks x 50 init states",
        "libero_goal": "LIBERO-Goal: 10 tasks x 50 init states",
        "libero_10": "LIBERO-10 (Long): 10 tasks x 50 init states",
        "libero_90": "LIBERO-90: 90 tasks x 50 init states",
        "fake": "a point mass reaching a target, microseconds per step (tests, demos)",
        "fake_fragile": "the fake suite with a simulator fault on task 1 (fault tests)",
        "simpler_google_vm": f"{_SIMPLER_GOOGLE}, visual matching: coke can, move near, drawers",
        "simpler_google_va": f"{_SIMPLER_GOOGLE}, variant aggregation: coke can, move near, drawers",
        "simpler_coke_can_vm": f"{_SIMPLER_GOOGLE}, visual matching: pick coke can",
        "simpler_coke_can_va": f"{_SIMPLER_GOOGLE}, variant aggregation: pick coke can",
        "simpler_move_near_vm": f"{_SIMPLER_GOOGLE}, visual matching: move near",
        "simpler_move_near_va": f"{_SIMPLER_GOOGLE}, variant aggregation: move near",
        "simpler_drawer_vm": f"{_SIMPLER_GOOGLE}, visual matching: open and close drawer",
        "simpler_drawer_va": f"{_SIMPLER_GOOGLE}, variant aggregation: open and close drawer",
        "simpler_bridge": "SimplerEnv WidowX (Bridge): the four tasks, 24 episodes each",
        "simpler_spoon_on_towel": "SimplerEnv WidowX (Bridge): spoon on towel",
        "simpler_carrot_on_plate": "SimplerEnv WidowX (Bridge): carrot on plate",
        "simpler_stack_cube": "SimplerEnv WidowX (Bridge): stack cube",
        "simpler_eggplant_in_basket": "SimplerEnv WidowX (Bridge): eggplant in basket",
        "simpler_google_vm_rasterized": "simpler_google_vm with the drawers rasterized (a recorded deviation)",
        "simpler_google_va_rasterized": "simpler_google_va with the drawers rasterized (a recorded deviation)",
        "simpler_drawer_vm_rasterized": "simpler_drawer_vm with the drawers rasterized (a recorded deviation)",
        "simpler_drawer_va_rasterized": "simpler_drawer_va with the drawers rasterized (a recorded deviation)",
    },
    "preset": {
        "openvla": "OpenVLA/openpi LIBERO reference: 10 wait steps, suite step limit, first success ends",
        "nora": "NORA's LIBERO script: up to 500 queries, success at a chunk's end, gripper >= 0 closes",
        "simpler": "SimplerEnv's evaluator: no wait steps, success judged at the last step",
        "simpler_any_step": "SimplerEnv with success at any step: NOT the protocol, inflates rates",
    },
    "world_model": {
        "tiny": "a tiny random world model (tests)",
        "vjepa2-ac": "V-JEPA 2-AC: frozen encoder + action-conditioned predictor, checkpoint= repo=",
    },
}

# Entry-point groups other packages register names in, by kind.
ENTRY_POINT_GROUPS = {"policy": "evalkit.policies", "suite": "evalkit.suites", "preset": "evalkit.presets",
                      "world_model": "evalkit.world_models"}
_plugins_read: set[str] = set()  # kinds whose entry points were read
_ORIGINS: dict[tuple[str, str], str] = {}  # (kind, name) -> where a name not built in came from
_CONFLICTS: dict[tuple[str, str], str] = {}  # (kind, name) -> why the name is unusable (two targets)


class UnknownNameError(KeyError):
    """A name that is not registered; the message suggests the closest ones."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


def names(kind: str) -> list[str]:
    """Every registered name of a kind, installed packages' included (unusable ones too: see describe)."""
    return sorted({*_table(kind), *(name for k, name in _CONFLICTS if k == kind)})


def target(kind: str, name: str) -> str:
    """The "module:attr" a name stands for; a name that is itself "module:attr" (a policy or suite
    of another package, `--policy my_pkg.policies:MyPolicy`) stands for itself."""
    table = _table(kind)
    if (kind, name) in _CONFLICTS:
        raise ValueError(_CONFLICTS[(kind, name)])
    if name not in table and ":" in name:
        return name
    if name not in table:
        close = difflib.get_close_matches(name, table, n=3, cutoff=0.5)
        hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        raise UnknownNameError(f"unknown {kind} {name!r}.{hint} Known: {', '.join(sorted(table))}.")
    return table[name]


def load(kind: str, name: str) -> Any:
    """Import and return the object registered under `name` (attr may be dotted: "mod:Class.make")."""
    module_name, _, attr = target(kind, name).partition(":")
    return functools.reduce(getattr, attr.split("."), importlib.import_module(module_name))


def register(kind: str, name: str, module_attr: str, origin: str = "registered at runtime") -> None:
    """Add an entry (plugins and tests); the target is not imported until used. Registering a name
    again with the same target does nothing; with another target it raises ValueError."""
    if ":" not in module_attr:
        raise ValueError(f"registry target must look like 'module:attr', got {module_attr!r}")
    table = _table(kind)
    if name in table and table[name] != module_attr:
        raise ValueError(f"{kind} {name!r} is registered twice: {table[name]!r} ({origin_of(kind, name)}) "
                         f"and {module_attr!r} ({origin}); rename one of them")
    if name not in table:
        table[name] = module_attr
        _ORIGINS[(kind, name)] = origin


def origin_of(kind: str, name: str) -> str:
    """Where a registered name comes from: "built in", "registered at runtime" or its distribution."""
    return _ORIGINS.get((kind, name), "built in")


def describe(kind: str, name: str) -> str:
    """One line about a name: the built-in table's, else the first docstring line of its target
    (imported; a target that cannot be imported here says so instead of raising)."""
    if (kind, name) in _CONFLICTS:
        return f"(unusable: {_CONFLICTS[(kind, name)]})"
    if name in DESCRIPTIONS.get(kind, {}) and (kind, name) not in _ORIGINS:
        return DESCRIPTIONS[kind][name]
    try:
        obj = load(kind, name)
    except Exception as exc:  # noqa: BLE001 - a plugin's missing dependency must not break `evalkit list`
        return f"(not importable here: {type(exc).__name__}: {_first_line(str(exc))})"
    text = getattr(obj, "description", None)
    return _first_line(text if isinstance(text, str) else getattr(obj, "__doc__", None)) or "(no docstring)"


def _first_line(text, limit: int = 100) -> str:
    line = next((part.strip() for part in (text or "").strip().splitlines()), "")
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _table(kind: str) -> dict[str, str]:
    if kind not in REGISTRY:
        raise UnknownNameError(f"unknown registry kind {kind!r}; known: {', '.join(REGISTRY)}")
    if kind not in _plugins_read:
        _plugins_read.add(kind)
        _read_entry_points(kind)
    return REGISTRY[kind]


def entry_points(group: str) -> list:
    """The installed entry points of a group (tests replace this)."""
    return list(metadata.entry_points(group=group))


def _read_entry_points(kind: str) -> None:
    """Register the names installed packages declare; two different targets for one name make the
    name unusable (looking it up raises, `evalkit list` says why) rather than breaking every command."""
    group = ENTRY_POINT_GROUPS.get(kind)
    for point in entry_points(group) if group else ():
        dist = getattr(point, "dist", None)
        where = f"entry point {group} of {dist.name} {dist.version}" if dist is not None else f"entry point {group}"
        try:
            register(kind, point.name, f"{point.module}:{point.attr}" if point.attr else point.value, origin=where)
        except ValueError as exc:
            _CONFLICTS[(kind, point.name)] = str(exc)


def make_policy(name: str, args: dict | None = None) -> Any:
    """Build a registered policy with keyword arguments (from --policy-arg or YAML), converted once to
    the types its constructor declares (evalkit.core.settings.coerce_policy_args: "false" is False)."""
    from evalkit.core.arguments import SettingError, coerce_policy_args

    factory = load("policy", name)
    kwargs = coerce_policy_args(factory, args, f"policy {name!r}")
    try:
        policy = factory(**kwargs)
    except TypeError as exc:
        raise TypeError(f"policy {name!r} rejected its arguments {args or {}}: {exc}") from exc
    spec = getattr(policy, "spec", None)
    if getattr(spec, "chunk_size", 1) < 1:  # e.g. a chunk size read from a checkpoint's config
        raise SettingError(f"policy {name!r} declares chunk_size {spec.chunk_size}; it must be >= 1")
    return policy


def make_suite(name: str) -> Any:
    """Build a registered suite definition (cheap: no simulator is started)."""
    return load("suite", name)(name)
