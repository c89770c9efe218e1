"""Contract checks of a policy or a suite, in the spirit of Gymnasium's `check_env`.

`evalkit check policy NAME` builds the policy, queries it on a few observations and checks what the
runner relies on: a PolicySpec, chunks of shape (chunk_size, action_dim), float dtype, finite values,
the same chunk for the same observation after reset() (and whatever was asked before, unless the spec
says stateful), and an `act_batch` that answers as a loop of `act`. Observations are synthetic (the
spec's cameras and state keys) unless a suite is named; a privileged policy reads the `fake` suite's,
and is skipped when it needs the ground truth of another simulator.

`evalkit check suite NAME` checks the episode grid, that resetting an episode and replaying the same
actions gives the same state, that observations hold every requested camera and no other, and that
step returns a bool.

Each check returns a list of Findings (pass, FAIL or skipped, with a message).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np

from evalkit.core import registry
from evalkit.core.images import ImagePreparer, image_path_for
from evalkit.core.arguments import SettingError
from evalkit.core.suite import EnvOptions, Suite
from evalkit.core.types import EpisodeSpec, NoAction, Observation, PolicySpec, Undecodable, validate_chunk

PASS, FAIL, SKIP = "pass", "FAIL", "skipped"
OBSERVATION_SUITE = "fake"  # where a privileged policy's observations come from when no suite is named
INSTRUCTIONS = ("pick up the black bowl and place it on the plate", "open the top drawer of the cabinet")
# Sizes of the state vectors the built-in suites provide (suites/libero/privileged.py); others get 3.
STATE_SIZES = {"eef_pos": 3, "eef_quat": 4, "gripper_qpos": 2, "joint_pos": 7, "eef_axis_angle": 3}
RESET_STEPS = 5  # actions replayed after each reset by the suite's determinism check
RTOL, ATOL = 1e-5, 1e-6  # "the same chunk": tolerant of float noise, not of a different draw


@dataclass(frozen=True)
class Finding:
    check: str
    status: str  # PASS, FAIL or SKIP
    message: str


def failed(findings: list[Finding]) -> bool:
    return any(f.status == FAIL for f in findings)


def format_findings(title: str, findings: list[Finding]) -> str:
    width = max([len(f.check) for f in findings] + [5])
    lines = [title] + [f"  {f.status:7s}  {f.check:{width}s}  {f.message}" for f in findings]
    counts = {s: sum(f.status == s for f in findings) for s in (PASS, FAIL, SKIP)}
    lines.append(f"{counts[PASS]} passed, {counts[FAIL]} failed, {counts[SKIP]} skipped")
    return "\n".join(lines)


def _error(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


# -- policies --------------------------------------------------------------------------------------


@dataclass
class Sample:
    """Observations to query: `sequence`, successive queries of one episode; `batch`, queries of
    several episodes (what the runner batches), each as (observation, instruction)."""

    source: str
    sequence: list = field(default_factory=list)
    batch: list = field(default_factory=list)
    defaulted: bool = False  # the suite was chosen by the checker, not by the user


class QueryFailed(Exception):
    def __init__(self, where: str, exc: BaseException):
        super().__init__(f"{where} raised {_error(exc)}")
        self.cause = exc


def check_policy(name: str, args: Optional[dict] = None, suite: Optional[str] = None) -> list[Finding]:
    """Check a registered (or "module:attr") policy. An unknown name or argument raises
    (UnknownNameError, SettingError): bad input, not a finding."""
    try:
        policy = registry.make_policy(name, args)
    except (registry.UnknownNameError, SettingError):
        raise
    except Exception as exc:  # noqa: BLE001 - the adapter's own constructor failing is a finding
        return [Finding("build", FAIL, f"policy {name!r} could not be built: {_error(exc)}")]
    findings = [_spec_finding(policy)]
    if failed(findings):
        return findings
    try:
        sample = _sample(policy.spec, suite)
    except (registry.UnknownNameError, SettingError):
        raise
    except Exception as exc:  # noqa: BLE001
        return findings + [Finding("observations", FAIL, f"could not make observations: {_error(exc)}")]
    return findings + _query_findings(policy, sample)


def _spec_finding(policy) -> Finding:
    spec = getattr(policy, "spec", None)
    if not isinstance(spec, PolicySpec):
        return Finding("spec", FAIL, f"policy.spec must be an evalkit.core.types.PolicySpec, got {type(spec).__name__}")
    problems = _spec_problems(spec)
    problems += [f"policy has no callable {m}()" for m in ("reset", "act") if not callable(getattr(policy, m, None))]
    if problems:
        return Finding("spec", FAIL, "; ".join(problems))
    kind = "stateful" if spec.stateful else "stateless"
    return Finding("spec", PASS, f"chunk_size {spec.chunk_size}, action_dim {spec.action_dim}, cameras "
                                 f"{list(spec.cameras)}, state {list(spec.state_keys)}, {kind}"
                                 + (", privileged" if spec.privileged else ""))


def _spec_problems(spec: PolicySpec) -> list[str]:
    problems = []
    for key in ("chunk_size", "action_dim"):
        value = getattr(spec, key)
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
            problems.append(f"spec.{key} must be an int >= 1, got {value!r}")
    for key in ("cameras", "state_keys"):
        value = getattr(spec, key)
        if not isinstance(value, (tuple, list)) or not all(isinstance(v, str) for v in value):
            problems.append(f"spec.{key} must be a tuple of names, got {value!r}")
    if spec.image_path != "reference":
        try:
            ImagePreparer(spec.image_path, spec.image_size)
        except ValueError as exc:
            problems.append(f"spec.image_path: {exc}")
    return problems


def _sample(spec: PolicySpec, suite: Optional[str]) -> Sample:
    if suite is not None:
        return _suite_sample(spec, suite)
    if spec.privileged:
        return _suite_sample(spec, OBSERVATION_SUITE, defaulted=True)
    return _synthetic_sample(spec)


def _synthetic_sample(spec: PolicySpec) -> Sample:
    rng = np.random.default_rng(0)

    def make(task: int, init: int, step: int) -> Observation:
        images = {cam: rng.integers(0, 256, (spec.image_size, spec.image_size, 3), dtype=np.uint8)
                  for cam in spec.cameras}
        state = {key: _state_value(key, rng) for key in spec.state_keys}
        return Observation(images, state, episode_key=f"contract-check/{task}/{init}/{init}", step=step)

    sequence = [(make(0, 0, i * spec.chunk_size), INSTRUCTIONS[0]) for i in range(3)]
    batch = [(make(0, 1, 0), INSTRUCTIONS[0]), (make(1, 0, 0), INSTRUCTIONS[1]), (make(1, 2, 7), INSTRUCTIONS[1])]
    return Sample("synthetic observations", sequence, batch)


def _state_value(key: str, rng) -> np.ndarray:
    value = rng.uniform(-0.5, 0.5, STATE_SIZES.get(key, 3))
    return value / np.linalg.norm(value) if key.endswith("quat") else value


def _suite_sample(spec: PolicySpec, suite_name: str, defaulted: bool = False) -> Sample:
    suite = registry.make_suite(suite_name)
    prepare = ImagePreparer(image_path_for(suite, spec), spec.image_size)
    env = suite.make_env(EnvOptions(cameras=tuple(spec.cameras), privileged=spec.privileged))
    try:
        episodes = _first_of_each_task(suite, 3)
        sequence = _observe(env, episodes[0], [i * spec.chunk_size for i in range(3)], prepare)
        batch = [_observe(env, episode, [0], prepare)[0] for episode in episodes]
    finally:
        env.close()
    return Sample(f"observations of suite {suite_name!r}", sequence, batch, defaulted)


def _first_of_each_task(suite: Suite, count: int) -> list[EpisodeSpec]:
    """Up to `count` episodes of different tasks (then other init states) of the suite's grid."""
    grid = suite.episodes()
    firsts: dict = {}
    for episode in grid:
        firsts.setdefault(episode.task_id, episode)
    chosen = list(firsts.values())
    return (chosen + [ep for ep in grid if ep not in chosen])[:count]


def _observe(env, episode: EpisodeSpec, steps: list[int], prepare) -> list:
    """Observations of one episode at the given env steps, holding still in between."""
    from evalkit.run.episode import WAIT_ACTION

    env.reset(episode, render=True)
    out, step = [], 0
    for wanted in steps:
        while step < wanted:
            step += 1
            env.step(WAIT_ACTION, render=step == wanted)
        obs = env.observation()
        obs.episode_key, obs.step = episode.key, step
        prepare(obs)
        out.append((obs, episode.instruction))
    return out


def _query_findings(policy, sample: Sample) -> list[Finding]:
    spec = policy.spec
    try:
        runs = _query_runs(policy, sample)
    except QueryFailed as exc:
        if spec.privileged and sample.defaulted:
            return [Finding("act", SKIP, f"needs privileged simulator state that the {sample.source} lack "
                                         f"({exc}); check it on the suite it is written for: --suite SUITE")]
        return [Finding("act", FAIL, f"on {sample.source}: {exc}")]
    chunks = [c for run in runs.values() for c in run]
    findings = [Finding("act", PASS, f"{len(chunks)} queries answered ({sample.source})")]
    findings += _chunk_findings(chunks, spec)
    if failed(findings):
        return findings
    findings.append(_same("determinism", runs["sequence"], runs["sequence again"],
                          "the same observations after reset() gave different chunks",
                          "seed every random draw from (seed, obs.episode_key, obs.step), as RandomPolicy does, "
                          "and forget per-episode state in reset()"))
    if not spec.stateful:
        findings.append(_same("order", runs["batch"], runs["batch reversed"][::-1],
                              "an observation's chunk depends on the queries asked before it",
                              "the runner batches several episodes' queries in any order: derive randomness from "
                              "(seed, obs.episode_key, obs.step), or declare PolicySpec(stateful=True)"))
    findings.append(_act_batch_finding(policy, sample, runs))
    return findings


def _query_runs(policy, sample: Sample) -> dict[str, list]:
    """The chunks of the loop runs: the sequence twice (reset between); for a stateless policy, the
    batch's observations in order and reversed."""
    runs = {"sequence": _loop(policy, sample.sequence, "act"),
            "sequence again": _loop(policy, sample.sequence, "act after reset()")}
    if not policy.spec.stateful:
        runs["batch"] = _loop(policy, sample.batch, "act")
        runs["batch reversed"] = _loop(policy, sample.batch[::-1], "act")
    return runs


def _loop(policy, queries: list, where: str) -> list:
    policy.reset()
    return [_call(lambda o=obs, t=text: policy.act(o, t), where) for obs, text in _copies(queries)]


def _call(query: Callable, where: str):
    try:
        return query()
    except Exception as exc:  # noqa: BLE001 - a policy's exception is a finding
        raise QueryFailed(where, exc) from exc


def _copies(queries: list) -> list:
    """Fresh copies, so that a policy editing an observation in place cannot change later queries."""
    return [(copy.deepcopy(obs), text) for obs, text in queries]


def _chunk_findings(chunks: list, spec: PolicySpec) -> list[Finding]:
    arrays, findings = [], []
    for i, raw in enumerate(chunks):
        array, problem = _as_array(raw)
        if problem:
            return [Finding("chunk", FAIL, f"query {i} returned {problem}")]
        arrays.append(array)
    findings.append(_dtype_finding(arrays))
    findings.append(_shape_finding(arrays, spec))
    if failed(findings):
        return findings
    findings.append(_finite_finding(arrays))
    if not failed(findings):
        problems = [p for p in (validate_chunk(raw, spec)[1] for raw in chunks) if p]
        findings.append(Finding("runner", FAIL, problems[0]) if problems
                        else Finding("runner", PASS, "every chunk passes evalkit.core.types.validate_chunk"))
    return findings


def _as_array(raw) -> tuple[Optional[np.ndarray], str]:
    """(the answer as an array, "") or (None, what it is instead)."""
    if isinstance(raw, NoAction):
        return None, f"NoAction({raw.reason!r}) instead of a chunk"
    try:
        array = np.asarray(raw.actions if isinstance(raw, Undecodable) else raw)
    except Exception as exc:  # noqa: BLE001 - e.g. a tensor on an accelerator
        return None, f"a {type(raw).__name__} that is not an array ({_error(exc)}); return a numpy array"
    if array.dtype == object:
        return None, f"a {type(raw).__name__} that is not a numeric array"
    return array, ""


def _dtype_finding(arrays: list) -> Finding:
    for i, chunk in enumerate(arrays):
        if chunk.dtype.kind != "f":
            return Finding("dtype", FAIL, f"query {i} returned dtype {chunk.dtype}; chunks must be floats")
    return Finding("dtype", PASS, f"float ({arrays[0].dtype})")


def _shape_finding(arrays: list, spec: PolicySpec) -> Finding:
    wanted = (spec.chunk_size, spec.action_dim)
    for i, chunk in enumerate(arrays):
        shape = np.shape(chunk)
        if shape != wanted and not (spec.chunk_size == 1 and shape == (spec.action_dim,)):
            return Finding("shape", FAIL, f"query {i} returned shape {shape}; the spec says (chunk_size, action_dim) "
                                          f"= {wanted}")
    return Finding("shape", PASS, f"{wanted} as the spec says")


def _finite_finding(arrays: list) -> Finding:
    for i, chunk in enumerate(arrays):
        values = np.asarray(chunk, dtype=np.float64)
        if not np.all(np.isfinite(values)):
            row, dim = np.argwhere(~np.isfinite(np.atleast_2d(values)))[0]
            return Finding("finite", FAIL, f"query {i} returned a non-finite value at row {row}, dim {dim}")
    return Finding("finite", PASS, "no NaN or infinity")


def _same(check: str, first: list, second: list, problem: str, advice: str) -> Finding:
    for i, (a, b) in enumerate(zip(first, second)):
        difference = _difference(a, b)
        if difference:
            return Finding(check, FAIL, f"{problem} (query {i}: {difference}); {advice}")
    return Finding(check, PASS, f"same chunks over {len(first)} queries")


def _difference(a, b) -> str:
    """"" when two answers are the same chunk, else how they differ."""
    (a, problem_a), (b, problem_b) = _as_array(a), _as_array(b)
    if problem_a or problem_b:
        return problem_a or problem_b
    if a.shape != b.shape:
        return f"shapes {a.shape} and {b.shape}"
    a, b = a.astype(np.float64), b.astype(np.float64)
    if np.allclose(a, b, rtol=RTOL, atol=ATOL, equal_nan=True):
        return ""
    return f"max difference {np.nanmax(np.abs(a - b)):.3g}"


def _act_batch_finding(policy, sample: Sample, runs: dict) -> Finding:
    batched = getattr(policy, "act_batch", None)
    if batched is None:
        return Finding("act_batch", SKIP, "no act_batch: the runner loops over act")
    try:
        if policy.spec.stateful:  # one instance per episode: batches of one, step by step
            policy.reset()
            answers = [_one_batch(batched, [query]) for query in _copies(sample.sequence)]
            answers, expected = [a[0] for a in answers], runs["sequence"]
        else:
            policy.reset()
            answers, expected = _one_batch(batched, _copies(sample.batch)), runs["batch"]
    except (QueryFailed, ValueError) as exc:
        return Finding("act_batch", FAIL, str(exc))
    return _same("act_batch", answers, expected, "act_batch differs from a loop of act",
                 "the runner uses act_batch whenever several queries wait")


def _one_batch(batched: Callable, queries: list) -> list:
    answers = list(_call(lambda: batched([o for o, _ in queries], [t for _, t in queries]), "act_batch"))
    if len(answers) != len(queries):
        raise ValueError(f"act_batch returned {len(answers)} chunks for {len(queries)} observations")
    return answers


# -- suites ----------------------------------------------------------------------------------------


def check_suite(name: str, cameras: Optional[tuple] = None, assets: Optional[str] = None) -> list[Finding]:
    """Check a registered (or "module:attr") suite: its grid, and on its first episode a built env.
    `cameras`: the cameras to request (default: suite.info["cameras"], else agentview)."""
    try:
        suite = registry.make_suite(name)
    except registry.UnknownNameError:
        raise
    except Exception as exc:  # noqa: BLE001
        return [Finding("build", FAIL, f"suite {name!r} could not be built: {_error(exc)}")]
    findings = [_grid_finding(suite)]
    if failed(findings):
        return findings
    cameras = tuple(cameras or suite.info.get("cameras") or ("agentview",))
    try:
        env = suite.make_env(EnvOptions(cameras=cameras, assets=assets))
    except Exception as exc:  # noqa: BLE001
        return findings + [Finding("env", FAIL, f"make_env raised {_error(exc)}")]
    try:
        findings += _env_findings(env, suite.episodes(episodes_per_task=1)[0], cameras)
    finally:
        findings.append(_close_finding(env))
    return findings


def _grid_finding(suite: Suite) -> Finding:
    try:
        grid = suite.episodes()
    except Exception as exc:  # noqa: BLE001
        return Finding("episode grid", FAIL, f"episodes() raised {_error(exc)}")
    problems = _grid_problems(suite, grid)
    if problems:
        return Finding("episode grid", FAIL, "; ".join(problems[:3]))
    return Finding("episode grid", PASS, f"{len(grid)} episodes, {len(suite.tasks)} tasks, "
                                         f"up to {suite.episodes_per_task} init states each")


def _grid_problems(suite: Suite, grid: list) -> list[str]:
    if not grid:
        return ["episodes() is empty"]
    problems = []
    keys = [ep.key for ep in grid]
    if len(set(keys)) != len(keys):
        problems.append(f"repeated episode keys, e.g. {next(k for k in keys if keys.count(k) > 1)}")
    for ep in grid:
        if not 0 <= ep.init_index < suite.episodes_per_task:
            problems.append(f"episode {ep.key}: init index outside 0..{suite.episodes_per_task - 1}")
        if not 0 <= ep.task_id < len(suite.tasks) or ep.max_steps < 1:
            problems.append(f"episode {ep.key}: task {ep.task_id} of {len(suite.tasks)}, max_steps {ep.max_steps}")
    return problems


def _env_findings(env, episode: EpisodeSpec, cameras: tuple) -> list[Finding]:
    actions = np.random.default_rng(0).uniform(-1, 1, (RESET_STEPS, 7))
    try:
        first = _replay(env, episode, actions)
        second = _replay(env, episode, actions)
    except Exception as exc:  # noqa: BLE001
        return [Finding("reset/step", FAIL, f"on episode {episode.key}: {_error(exc)}")]
    return [_step_finding(first["flags"]), _camera_finding(first["observations"], cameras),
            _reset_finding(first, second, episode)]


def _replay(env, episode: EpisodeSpec, actions: np.ndarray) -> dict:
    """reset, then the actions, rendering every step: the observations, settled states and flags."""
    env.reset(episode, render=True)
    record = {"observations": [env.observation()], "settled": [_settled(env)], "flags": []}
    for action in actions:
        record["flags"].append(env.step(action.copy(), render=True))
        record["observations"].append(env.observation())
        record["settled"].append(_settled(env))
    return record


def _settled(env) -> dict:
    settled = getattr(env, "settled_state", None)
    return dict(settled() or {}) if callable(settled) else {}


def _step_finding(flags: list) -> Finding:
    bad = [f for f in flags if not isinstance(f, (bool, np.bool_))]
    if bad:
        return Finding("step", FAIL, f"step returned {type(bad[0]).__name__} {bad[0]!r}; it must return a bool")
    return Finding("step", PASS, "returns a bool success flag")


def _camera_finding(observations: list, cameras: tuple) -> Finding:
    for i, obs in enumerate(observations):
        have = set(obs.images)
        if have != set(cameras):
            missing, extra = sorted(set(cameras) - have), sorted(have - set(cameras))
            return Finding("cameras", FAIL, f"observation {i} (render=True): missing {missing}, not requested {extra}")
        for camera, image in obs.images.items():
            image = np.asarray(image)
            if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
                return Finding("cameras", FAIL, f"{camera}: {image.dtype} {image.shape}; expected HxWx3 uint8")
    return Finding("cameras", PASS, f"{list(cameras)} in every rendered observation, HxWx3 uint8")


def _reset_finding(first: dict, second: dict, episode: EpisodeSpec) -> Finding:
    for i, (a, b) in enumerate(zip(first["observations"], second["observations"])):
        where = "after reset" if i == 0 else f"after step {i}"
        problem = (_dict_difference(a.state, b.state, "state") or _dict_difference(a.images, b.images, "image")
                   or _dict_difference(first["settled"][i], second["settled"][i], "settled_state"))
        if problem:
            return Finding("reset determinism", FAIL, f"episode {episode.key} reset twice with the same actions: "
                                                      f"{problem} differs {where}")
    note = "" if first["settled"][0] else " (no settled_state(): no physics fingerprint)"
    return Finding("reset determinism", PASS, f"same state over reset + {len(first['flags'])} steps, twice{note}")


def _dict_difference(a: dict, b: dict, what: str) -> str:
    if set(a) != set(b):
        return f"{what} keys ({sorted(a)} vs {sorted(b)})"
    for key in sorted(a):
        x, y = np.asarray(a[key]), np.asarray(b[key])
        same = x.shape == y.shape and (np.array_equal(x, y) if x.dtype.kind not in "fc"
                                       else np.allclose(x, y, rtol=RTOL, atol=ATOL, equal_nan=True))
        if not same:
            return f"{what} {key!r}"
    return ""


def _close_finding(env) -> Finding:
    try:
        env.close()
    except Exception as exc:  # noqa: BLE001
        return Finding("close", FAIL, f"close() raised {_error(exc)}")
    return Finding("close", PASS, "close() returned")
