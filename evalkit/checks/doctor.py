"""`evalkit doctor`: is this install's physics the physics the published numbers were made on?

For each suite with committed reference fingerprints, re-run its fixed sample of episodes up to
the end of the wait steps (no rendering, no policy), fingerprint the settled states, and say
which suites and tasks drift and which package versions differ from the ones the reference was
made with. A suite whose simulator is not installed is reported as such, not as a failure.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import metadata
from typing import Optional

from evalkit.core import registry
from evalkit.core.fingerprint import combine, max_pose_difference, rounded_state, state_fingerprint
from evalkit.run.episode import WAIT_ACTION
from evalkit.core.suite import EnvOptions, Suite

CONSISTENT, DRIFT, UNAVAILABLE = "consistent", "DRIFT", "not installed"


@dataclass
class SuiteCheck:
    suite: str
    status: str
    drifted: list[str] = field(default_factory=list)  # "task 5 (max pose difference 0.041)"
    episodes: int = 0
    detail: str = ""


def settled_states(suite: Suite, episodes, wait_steps: int, assets: Optional[str] = None, env=None) -> dict:
    """{episode key: {"fingerprint", "state"}} after reset and the wait steps, as the runner settles."""
    env = env or suite.make_env(EnvOptions(assets=assets))
    out = {}
    try:
        for episode in episodes:
            env.reset(episode, render=False)
            for _ in range(wait_steps):
                env.step(WAIT_ACTION, render=False)
            state = env.settled_state()
            out[episode.key] = {"fingerprint": state_fingerprint(state), "state": rounded_state(state)}
    finally:
        env.close()
    return out


def reference_file(suites: list[Suite], wait_steps: int, packages: tuple[str, ...], assets=None) -> dict:
    """What scripts/make_fingerprints.py commits: the sample's settled states and the versions."""
    body = {}
    for suite in suites:
        episodes = settled_states(suite, suite.doctor_sample(), wait_steps, assets)
        body[suite.name] = {"fingerprint": combine({k: v["fingerprint"] for k, v in episodes.items()}),
                            "episodes": episodes}
    return {"wait_steps": wait_steps, "versions": installed_versions(packages), "suites": body}


def installed_versions(packages) -> dict[str, str]:
    versions = {}
    for package in packages:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return versions


def check_suite(suite: Suite, assets: Optional[str] = None) -> SuiteCheck:
    reference = suite.reference_fingerprints()
    episodes = [ep for ep in suite.doctor_sample() if ep.key in reference.get("episodes", {})]
    try:
        env = suite.make_env(EnvOptions(assets=assets))
    except Exception as exc:  # the simulator or its assets are not installed here
        return SuiteCheck(suite.name, UNAVAILABLE, detail=(str(exc).splitlines() or [type(exc).__name__])[0])
    now = settled_states(suite, episodes, reference["wait_steps"], env=env)
    drifted = []
    for episode in episodes:
        expected, got = reference["episodes"][episode.key], now[episode.key]
        if expected["fingerprint"] != got["fingerprint"]:
            diff = max_pose_difference(expected["state"], got["state"])
            how = "other joints" if diff is None else f"max joint/pose difference {diff:.3f}"
            drifted.append(f"task {episode.task_id} init {episode.init_index} ({how})")
    return SuiteCheck(suite.name, DRIFT if drifted else CONSISTENT, drifted, len(episodes))


def version_differences(reference_versions: dict) -> list[str]:
    now = installed_versions(reference_versions)
    return [f"{p} {now[p]} (reference made with {v})" for p, v in sorted(reference_versions.items()) if now[p] != v]


def doctor(suite_names: Optional[list[str]] = None, assets: Optional[str] = None, echo=print) -> int:
    """Print the check; exit code 0 when every checked suite is consistent, 1 on drift."""
    names = suite_names or [n for n in registry.names("suite") if _has_reference(n)]
    drift = False
    versions_said: set = set()
    for name in names:
        suite = registry.make_suite(name)
        reference = suite.reference_fingerprints()
        if not reference:
            echo(f"{name}: no reference fingerprints committed; nothing to check")
            continue
        check = check_suite(suite, assets)
        differences = tuple(version_differences(reference.get("versions", {})))
        if check.status != UNAVAILABLE and differences and differences not in versions_said:
            versions_said.add(differences)
            echo("package versions differ from the pinned ones: " + "; ".join(differences))
        drift |= check.status == DRIFT
        echo(_line(check))
    return 1 if drift else 0


def _line(check: SuiteCheck) -> str:
    if check.status == UNAVAILABLE:
        return f"{check.suite}: {UNAVAILABLE} ({check.detail})"
    if check.status == CONSISTENT:
        return f"{check.suite}: {CONSISTENT} ({check.episodes} settled states match the reference)"
    return (f"{check.suite}: {DRIFT} in {len(check.drifted)} of {check.episodes} settled states: "
            + "; ".join(check.drifted) + ". Results on this install are not comparable with published ones.")


def _has_reference(name: str) -> bool:
    """Suites whose definitions are cheap to load and carry a reference (skips unloadable ones)."""
    try:
        return bool(registry.make_suite(name).reference_fingerprints())
    except Exception:  # a suite whose own package is missing: doctor says nothing about it
        return False
