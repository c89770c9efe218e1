"""One registry for everything chosen by name: policies, suites, protocol presets.

Entries are lazy "module:attr" targets so that `evalkit list` imports neither
torch nor a simulator; a target is imported only when it is built.
"""

from __future__ import annotations

import difflib
import importlib
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


class UnknownNameError(KeyError):
    """A name that is not registered; the message suggests the closest ones."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


def names(kind: str) -> list[str]:
    return sorted(_table(kind))


def target(kind: str, name: str) -> str:
    """The "module:attr" a name stands for; a name that is itself "module:attr" (a policy or suite
    of another package, `--policy my_pkg.policies:MyPolicy`) stands for itself."""
    table = _table(kind)
    if name not in table and ":" in name:
        return name
    if name not in table:
        close = difflib.get_close_matches(name, table, n=3, cutoff=0.5)
        hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        raise UnknownNameError(f"unknown {kind} {name!r}.{hint} Known: {', '.join(sorted(table))}.")
    return table[name]


def load(kind: str, name: str) -> Any:
    """Import and return the object registered under `name`."""
    module_name, _, attr = target(kind, name).partition(":")
    return getattr(importlib.import_module(module_name), attr)


def register(kind: str, name: str, module_attr: str) -> None:
    """Add an entry (plugins and tests); the target is not imported until used."""
    if ":" not in module_attr:
        raise ValueError(f"registry target must look like 'module:attr', got {module_attr!r}")
    _table(kind)[name] = module_attr


def _table(kind: str) -> dict[str, str]:
    if kind not in REGISTRY:
        raise UnknownNameError(f"unknown registry kind {kind!r}; known: {', '.join(REGISTRY)}")
    return REGISTRY[kind]


def make_policy(name: str, args: dict | None = None) -> Any:
    """Build a registered policy with keyword arguments (from --policy-arg or YAML), converted once to
    the types its constructor declares (evalkit.core.settings.coerce_policy_args: "false" is False)."""
    from evalkit.core.settings import SettingError, coerce_policy_args

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
