"""`evalkit run`: resolve a RunConfig, skip finished episodes, run the rest, store each result."""

from __future__ import annotations

import dataclasses
import platform
import subprocess
import sys
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Optional

from evalkit.core import registry
from evalkit.core.execution import REFERENCE_MODE, normalize_mode
from evalkit.core.conventions import postprocessor_for
from evalkit.core.images import ImagePreparer, image_path_for
from evalkit.run.supervisor import RunInterrupted, supervise_run
from evalkit.run.video import plan_videos
from evalkit.run.workers import EpisodeWorker, ParallelRunner, WorkerConfig
from evalkit.core.protocol import Protocol
from evalkit.run.episode import describe_run
from evalkit.run.shards import bind_shard, shard_of
from evalkit.core.settings import parse_shard, time_limit
from evalkit.results.store import ResultStore, RunLock
from evalkit.core.suite import EnvOptions
from evalkit.core.types import EpisodeResult

TRACKED_PACKAGES = ("evalkit", "numpy", "mujoco", "robosuite", "hf-libero", "bddl", "torch", "transformers")


@dataclass
class RunConfig:
    """Everything `evalkit run` takes; flags and YAML keys have these names."""

    suites: list[str] = field(default_factory=lambda: ["libero_spatial"])
    policy: str = "oracle"
    policy_args: dict = field(default_factory=dict)
    mode: str = "open_loop"
    preset: Optional[str] = None  # None: the suites' own preset (openvla for LIBERO, simpler for SimplerEnv)
    # protocol overrides (None: the preset's value)
    max_steps: Optional[int] = None
    budget_unit: Optional[str] = None
    success_rule: Optional[str] = None
    wait_steps: Optional[int] = None
    tasks: Optional[list[int]] = None
    episodes_per_task: Optional[int] = None
    seed: int = 0
    workers: int = 1
    out: Optional[str] = None
    # Episode videos (evalkit/run/video.py): False, "all" (YAML true), "failures", "successes", or N: the first N
    # init states of each task. Not part of the identity.
    video: bool | str | int = False
    render_all: bool = False
    image_size: int = 256
    assets: Optional[str] = None
    # Limits that end a hung episode as `timeout` (enforced by the supervisor, evalkit/run/supervisor.py);
    # a value <= 0 turns the limit off.
    query_timeout_s: float = 600.0
    episode_timeout_s: float = 3600.0
    # "I/N": run only shard I (0-based) of N, every N-th episode of the run (evalkit/run/shards.py); not part of
    # the identity, so that `evalkit merge` can check that shards belong to one run.
    shard: Optional[str] = None
    # Where episodes run: "local" (this machine: -w worker processes) or "ray" (simulator actors across a
    # Ray cluster, `workers` of them, and policy actors; evalkit/run/ray_backend.py). Not part of the
    # identity: outcomes do not depend on it.
    backend: str = "local"
    ray_address: Optional[str] = None  # None: a local Ray; "auto" or HOST:PORT: join that cluster
    ray_sim_cpus: float = 1.0  # CPUs each simulator actor asks for
    ray_sim_resources: dict = field(default_factory=dict)  # custom resources it asks for, e.g. {"sim": 1}
    ray_policy_gpus: float = 0.0  # GPUs each policy actor asks for
    ray_policy_replicas: int = 1
    ray_max_batch: int = 8  # queries a policy actor answers with one act_batch
    ray_max_wait_ms: float = 2.0  # how long the first query of a batch waits for others
    episode_retries: int = 2  # a simulator actor (or its node) that dies: its episode is run again this often

    def __post_init__(self):
        from evalkit.core.settings import normalize_video, validate_run_config

        validate_run_config(self)  # a bad value is named here, before it can spoil episodes (evalkit/core/settings.py)
        self.mode = normalize_mode(self.mode)
        self.video = normalize_video(self.video)  # true -> "all", "3" -> 3
        if self.shard is not None:  # " 1 / 4" -> "1/4"
            self.shard = "{}/{}".format(*parse_shard(self.shard))
        if self.preset is None:
            self.preset = default_preset(self.suites)

    @classmethod
    def from_dict(cls, values: dict) -> "RunConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            import difflib

            hints = [f"{k} (did you mean {difflib.get_close_matches(k, known, 1)[0]!r}?)"
                     if difflib.get_close_matches(k, known, 1) else k for k in unknown]
            raise ValueError(f"unknown run setting(s): {', '.join(hints)}")
        values = dict(values)
        if isinstance(values.get("suites"), str):
            values["suites"] = [s for s in values["suites"].split(",") if s]
        from evalkit.core.settings import parse_tasks

        values["tasks"] = parse_tasks(values.get("tasks"))  # "0,2" from a flag or YAML
        return cls(**values)

    def check(self) -> None:
        """Every setting, the suites' task ranges and the run directory's path, before anything is built
        or created (evalkit.core.settings.check_run)."""
        from evalkit.core.settings import check_run

        check_run(self)

    def protocol(self) -> Protocol:
        preset: Protocol = registry.load("preset", self.preset)
        return preset.with_overrides(budget=self.max_steps, budget_unit=self.budget_unit,
                                     success_rule=self.success_rule, wait_steps=self.wait_steps)

    def out_dir(self) -> Path:
        if self.out:
            return Path(self.out)
        shard = "__shard-{}-of-{}".format(*parse_shard(self.shard)) if self.shard else ""
        return Path("runs") / f"{'+'.join(self.suites)}__{self.policy}__{self.mode.replace(':', '-')}__{self.preset}{shard}"

    def typed_policy_args(self) -> dict:
        """The policy arguments as the policy receives them ("false" and false are one setting)."""
        from evalkit.core.arguments import coerce_policy_args

        return coerce_policy_args(registry.load("policy", self.policy), self.policy_args, f"policy {self.policy!r}")

    def identity(self) -> dict:
        """What the numbers depend on; a run directory holds results of one identity only."""
        return {"policy": self.policy, "policy_args": {k: str(v) for k, v in recordable(self.typed_policy_args()).items()},
                "mode": self.mode, "protocol": self.protocol().to_dict(), "image_size": self.image_size,
                "assets": self.assets or "default", "seed": self.seed}


def default_preset(suite_names) -> str:
    """The protocol preset the suites' published numbers use; suites that disagree need --preset."""
    presets = {name: registry.make_suite(name).preset for name in suite_names}
    if len(set(presets.values())) > 1:
        raise ValueError(f"these suites use different protocols ({', '.join(f'{k}: {v}' for k, v in presets.items())}); "
                         "run them separately or pass --preset")
    return next(iter(presets.values()), "openvla")


def provenance(config: RunConfig) -> dict:
    versions = {}
    for package in TRACKED_PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    recorded = dataclasses.asdict(config)
    recorded["policy_args"] = recordable(config.policy_args)
    return {"config": recorded, "versions": versions, "git": git_revision(), "python": sys.version.split()[0],
            "platform": platform.platform(), "argv": [_redact(arg) for arg in sys.argv]}


SECRET_POLICY_ARGS = ("token",)  # a shared secret (policies.remote) is not a setting: never stored or exported


def recordable(policy_args: dict) -> dict:
    return {k: v for k, v in policy_args.items() if k not in SECRET_POLICY_ARGS}


def _redact(arg: str) -> str:
    key, sep, _ = arg.partition("=")
    return f"{key}=<redacted>" if sep and key in SECRET_POLICY_ARGS else arg


def git_revision() -> str:
    root = Path(__file__).resolve().parents[2]
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True).stdout.strip()
        return rev.stdout.strip() + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def execute(config: RunConfig, progress: bool = True, retry_errors: bool = False, supervise: bool = False) -> Path:
    """Run (or finish) the configured run; returns its directory.

    `supervise` runs it in a watched child process (what `evalkit run` does): a process death or a
    hang then costs one episode, recorded as error or timeout, and the run goes on (evalkit/run/supervisor.py).
    Without it the run is in this process: faults Python can catch still end their episode only, and
    workers (-w > 1) that die or overrun the episode limit are replaced, but a segfault ends the run.
    """
    config.check()  # every setting, the suites' task ranges and --out, before anything is built or created
    if supervise:
        return supervise_run(run_in_process, config, progress, retry_errors)
    with RunLock(config.out_dir()):
        return run_in_process(config, progress, retry_errors)


def run_in_process(config: RunConfig, progress: bool = True, retry_errors: bool = False, on_plan=None) -> Path:
    """The run itself; the caller holds the run directory's lock. `on_plan(total, done)` is told the
    episode count before the first episode starts."""
    protocol = config.protocol()
    suites = [registry.make_suite(name) for name in config.suites]
    ray_runner = _ray_runner(config)
    policy = ray_runner.policy() if ray_runner else registry.make_policy(config.policy, config.policy_args)
    requested_mode = config.mode
    config = dataclasses.replace(config, mode=resolve_mode(config.mode, config.policy, policy.spec, suites))
    out = config.out_dir()
    episodes = [ep for s in suites for ep in s.episodes(config.tasks, config.episodes_per_task, config.seed)]
    refuse_overlapping_suites(episodes)
    video_plan = plan_videos(config.video, episodes)  # over the whole run: the same with any worker count or shard
    for suite in suites:  # an unknown image path fails here, not in every episode
        ImagePreparer(image_path_for(suite, policy.spec), policy.spec.image_size)
    store = _open_store(out, config, protocol, suites, policy, requested_mode, run_episodes=episodes)
    episodes = shard_of(episodes, config.shard)  # --shard I/N: episodes I, I+N, I+2N, ... (evalkit/run/shards.py)
    if retry_errors and (retired := store.retire_faults()):
        print(f"--retry-errors: running {retired} episode(s) stored as error or timeout again", file=sys.stderr)

    finished = {r.key: r for r in store.results()}
    todo = [ep for ep in episodes if ep.key not in finished]
    if len(todo) < len(episodes):
        print(f"resuming {out}: {len(episodes) - len(todo)} of {len(episodes)} episodes already done", file=sys.stderr)
    already = [finished[ep.key] for ep in episodes if ep.key in finished]
    if on_plan is not None:
        on_plan(len(episodes), len(already))
    recorder = _Recorder(store, _progress_bar(len(episodes), len(already), progress), sum(r.success for r in already))
    in_flight = InFlightLog(store, config.query_timeout_s, config.episode_timeout_s)
    worker_config = WorkerConfig(
        suites={s.name: s for s in suites}, spec=policy.spec, mode=config.mode, protocol=protocol,
        env_options=EnvOptions(cameras=tuple(policy.spec.cameras), privileged=policy.spec.privileged,
                               video=bool(config.video), render_all=config.render_all, image_size=config.image_size,
                               assets=config.assets),
        video_dir=str(out / "videos") if config.video else None, video_plan=video_plan,
    )
    try:
        if ray_runner is not None:
            ray_runner.in_flight = in_flight  # episodes are marked as the driver hands them out
            ray_runner.run(todo, recorder, worker_config)
        else:
            _run_all(todo, policy, config, worker_config, recorder, in_flight)
    except KeyboardInterrupt:
        raise RunInterrupted(out, len(store.results()), len(episodes)) from None
    finally:
        recorder.bar.close()
        store.close()
    return out


def resolve_mode(mode: str, policy_name: str, spec, suites) -> str:
    """`reference`: the execution mode the policy's published numbers used on these suites' robot."""
    if mode != REFERENCE_MODE:
        return mode
    declared = dict(spec.reference_modes)
    missing = sorted({s.robot for s in suites} - set(declared))
    if missing:
        raise ValueError(f"policy {policy_name!r} declares no reference execution mode for {', '.join(missing)} suites "
                         f"(it declares {declared or 'none'}); pass --mode open_loop | receding:K | ensemble:TEMP")
    modes = {declared[s.robot] for s in suites}
    if len(modes) > 1:
        raise ValueError(f"policy {policy_name!r}'s reference modes differ across these suites "
                         f"({', '.join(f'{s.name}: {declared[s.robot]}' for s in suites)}); run them separately")
    return normalize_mode(modes.pop())


def refuse_overlapping_suites(episodes) -> None:
    """Two suites of one run holding the same episode (a SimplerEnv per-task suite inside its full
    suite) would count it twice and pool the tables; refuse, naming them."""
    owners: dict = {}
    for ep in episodes:
        if not ep.params:  # only suites with parameterised grids share episodes across names
            continue
        owner = owners.setdefault((ep.task_name, ep.params), ep.suite)
        if owner != ep.suite:
            raise ValueError(f"suites {owner} and {ep.suite} both hold episodes of {ep.task_name} (e.g. init "
                             f"{ep.init_index}); one run would count them twice. Run only one of them")


def _open_store(out: Path, config: RunConfig, protocol: Protocol, suites, policy,
                requested_mode: Optional[str] = None, run_episodes=()) -> ResultStore:
    """Bind the run directory to this run's identity (and shard) and record how the run was made."""
    store = ResultStore(out)
    store.claim(config.identity())
    bind_shard(store, config.shard, run_episodes)  # a shard directory holds one shard of one run
    postprocess = {s.name: postprocessor_for(s, policy.spec).name for s in suites}
    semantics = describe_run(protocol, config.mode, postprocess)
    semantics["mode_requested"] = requested_mode or config.mode
    semantics["policy_conventions"] = policy_conventions(policy.spec, suites)
    store.set_meta("semantics", semantics)
    store.set_meta("reference_fingerprints", reference_fingerprints(suites, protocol))
    store.set_meta("suites", {s.name: {"family": s.family, "max_steps": s.max_steps, "robot": s.robot, **s.info} for s in suites})
    store.set_meta("policy_spec", dataclasses.asdict(policy.spec))
    store.start_session(provenance(config))
    return store


def policy_conventions(spec, suites) -> dict:
    """The policy-side choices a number depends on, recorded with the run (and printed by report)."""
    return {"image_path": {s.name: image_path_for(s, spec) for s in suites}, "image_size": spec.image_size,
            "sticky_gripper_variant": spec.sticky_gripper_variant, "reference_modes": dict(spec.reference_modes)}


def reference_fingerprints(suites, protocol: Protocol) -> dict:
    """{suite: {episode key: fingerprint}} of the committed reference, when it was made with this
    run's wait steps: `evalkit report` marks a run whose settled states differ (a drifted simulator)."""
    out = {}
    for suite in suites:
        reference = suite.reference_fingerprints()
        if reference and reference["wait_steps"] == protocol.wait_steps:
            out[suite.name] = {k: v["fingerprint"] for k, v in reference["episodes"].items()}
    return out


class _Recorder:
    """Stores each finished episode at once and keeps the progress bar's tallies."""

    def __init__(self, store: ResultStore, bar, successes: int):
        self.store, self.bar, self.successes = store, bar, successes

    def __call__(self, result: EpisodeResult) -> None:
        self.store.add(result)
        self.successes += int(result.success)
        self.bar.update(1)
        self.bar.set_postfix(success=f"{self.successes}/{self.bar.n}", last=result.termination)
        if result.termination in ("error", "timeout", "invalid_action"):
            last_line = result.error.strip().splitlines()[-1] if result.error.strip() else ""
            self.bar.write(f"episode {result.key} ended as {result.termination}: {last_line}")


def _ray_runner(config: RunConfig):
    """The Ray backend's runner (it holds the policy actors), or None for local workers."""
    if config.backend != "ray":
        return None
    from evalkit.run.ray_backend import RayRunner, RaySettings

    return RayRunner(config.policy, config.policy_args, RaySettings.of(config))


def _run_all(todo, policy, config: RunConfig, worker_config: WorkerConfig, record, in_flight: "InFlightLog") -> None:
    """Episodes that were in flight with others when a run process died go first, each alone, so
    that the one that kills the process is the only one blamed (evalkit/run/supervisor.py)."""
    suspects = in_flight.suspects()
    alone = [ep for ep in todo if ep.key in suspects]
    rest = [ep for ep in todo if ep.key not in suspects]
    in_process = alone + (rest if config.workers <= 1 else [])
    if in_process:
        worker = EpisodeWorker(WatchedPolicy(policy, in_flight), worker_config)
        try:
            for episode in in_process:
                in_flight.started(episode, solo=episode.key in suspects)
                record(worker.run(episode))
        finally:
            worker.close()
    if rest and config.workers > 1:
        ParallelRunner(policy, worker_config, config.workers,
                       make_policy=lambda: registry.make_policy(config.policy, config.policy_args),
                       in_flight=in_flight).run(rest, record)


class InFlightLog:
    """Writes which episodes are running, and which wait on the policy, into the store: what the
    supervisor reads to enforce the time limits and to tell which episode a dead process was running."""

    def __init__(self, store: ResultStore, query_timeout_s: float, episode_timeout_s: float):
        self.store = store
        self.query_timeout_s = time_limit(query_timeout_s)
        self.episode_timeout_s = time_limit(episode_timeout_s)

    def suspects(self) -> set[str]:
        return {row["key"] for row in self.store.in_flight() if row["deaths"] > 0}

    def started(self, episode, solo: bool = False) -> None:
        self.store.mark_started(episode, _deadline(self.episode_timeout_s), solo)

    def querying(self, keys) -> None:
        self.store.mark_phase(keys, "query", _deadline(self.query_timeout_s))

    def answered(self, keys) -> None:
        self.store.mark_phase(keys, "env")


def _deadline(limit_s: Optional[float]) -> Optional[float]:
    return None if limit_s is None else time.time() + limit_s


class WatchedPolicy:
    """The policy, with each query marked in the in-flight log (in-process runs)."""

    def __init__(self, policy, in_flight: InFlightLog):
        self.policy, self.in_flight, self.spec = policy, in_flight, policy.spec

    def reset(self) -> None:
        self.policy.reset()

    def act(self, obs, instruction: str):
        self.in_flight.querying([obs.episode_key])
        chunk = self.policy.act(obs, instruction)
        self.in_flight.answered([obs.episode_key])
        return chunk


def _progress_bar(total: int, initial: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, disable=not enabled, unit="ep", desc="episodes", dynamic_ncols=True,
                file=sys.stderr)
