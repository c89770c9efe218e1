"""Run settings, checked once, before anything is built or written.

A bad value must stop the run with a message naming the setting, not end every episode as
`error` or silently mean something else (issue 12, item 7: `seed: 1.5`, `workers: 0`,
`video: "no"`, `--tasks 0,0`, `--mode ensemble:nan`, an `--out` that names a file, ...).
Policy arguments are converted to their declared types by evalkit.core.arguments.
"""

from __future__ import annotations

import math
import numbers
import os
import re
from pathlib import Path
from typing import Optional

from evalkit.core.arguments import SettingError, coerce_policy_args, is_int as _is_int

# Smallest allowed value of each integer run setting (all but seed, workers and image_size may be None).
RUN_INTEGERS = {"seed": 0, "workers": 1, "image_size": 1, "max_steps": 1, "wait_steps": 0, "episodes_per_task": 1,
                "ray_policy_replicas": 1, "ray_max_batch": 1, "episode_retries": 0}
REQUIRED_INTEGERS = ("seed", "workers", "image_size", "ray_policy_replicas", "ray_max_batch", "episode_retries")
BACKENDS = ("local", "ray")
RUN_BOOLS = ("render_all",)
VIDEO_CHOICES = ("all", "failures", "successes")  # `video`: also true (all), false (none) or N per task
RUN_STRINGS = ("policy", "mode", "preset", "budget_unit", "success_rule", "assets")
RUN_NUMBERS = ("query_timeout_s", "episode_timeout_s")  # finite; <= 0 turns the limit off
RUN_AMOUNTS = ("ray_sim_cpus", "ray_policy_gpus", "ray_max_wait_ms")  # finite, >= 0


# -- run settings ------------------------------------------------------------------------------

def validate_run_config(config) -> None:
    """Types and ranges of every RunConfig field; cheap (no simulator, no disk), so RunConfig runs
    it on construction and a sweep refuses a bad point before its first run."""
    for key, low in RUN_INTEGERS.items():
        _check_int(key, getattr(config, key), low, optional=key not in REQUIRED_INTEGERS)
    normalize_video(config.video)
    for key in RUN_BOOLS:
        value = getattr(config, key)
        if not isinstance(value, bool):
            raise _bad(key, value, "true or false (an unquoted YAML boolean; quoted 'no' is a string)")
    for key in RUN_NUMBERS:
        value = getattr(config, key, 0.0)
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
            raise _bad(key, value, "a finite number of seconds (0 or less: no limit)")
    for key in RUN_AMOUNTS:
        value = getattr(config, key)
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value < 0:
            raise _bad(key, value, "a finite number >= 0")
    _check_backend(config)
    for key in RUN_STRINGS:
        value = getattr(config, key)
        if not (value is None and key not in ("policy", "mode")) and not (isinstance(value, str) and value):
            raise _bad(key, value, "a non-empty string")
    if config.out is not None and not (isinstance(config.out, (str, os.PathLike)) and str(config.out)):
        raise _bad("out", config.out, "a directory path")
    _check_suites(config.suites)
    _check_policy_args(config.policy_args)
    _check_tasks(config.tasks)
    _check_mode(config.mode)
    parse_shard(getattr(config, "shard", None))
    if config.preset is not None:
        config.protocol()  # an unknown preset, or override values it refuses, named by Protocol.validate


def time_limit(seconds: float) -> Optional[float]:
    """A time limit setting (query_timeout_s, episode_timeout_s) as seconds, or None: <= 0 turns it off."""
    return seconds if seconds > 0 else None


def _check_backend(config) -> None:
    if config.backend not in BACKENDS:
        raise _bad("backend", config.backend, " or ".join(repr(b) for b in BACKENDS))
    if config.ray_address is not None and not (isinstance(config.ray_address, str) and config.ray_address):
        raise _bad("ray_address", config.ray_address, "'auto' or HOST:PORT of a running Ray cluster")
    resources = config.ray_sim_resources
    if not isinstance(resources, dict) or not all(
            isinstance(k, str) and isinstance(v, numbers.Real) and not isinstance(v, bool) and v > 0
            for k, v in resources.items()):
        raise _bad("ray_sim_resources", resources, "a mapping of resource name to a positive amount, e.g. {sim: 1}")


def check_run(config) -> None:
    """Everything `validate_run_config` checks, plus what needs the suites and the disk: task ids
    and episode counts within each suite, and a run directory that can be created and written.
    `evalkit run` calls it before it builds the policy or creates the directory."""
    from evalkit.core import registry

    validate_run_config(config)
    # the policy's arguments too (its module is imported, nothing is built): chunk_size=0 is refused here
    coerce_policy_args(registry.load("policy", config.policy), config.policy_args, f"policy {config.policy!r}")
    for name in config.suites:
        suite = registry.make_suite(name)
        wrong = [t for t in config.tasks or () if t >= len(suite.tasks)]
        if wrong:
            raise SettingError(f"run setting 'tasks': {name} has tasks 0..{len(suite.tasks) - 1}; got {wrong}")
        if (config.episodes_per_task or 0) > suite.episodes_per_task:
            raise SettingError(f"run setting 'episodes_per_task': {name} has {suite.episodes_per_task} init states "
                               f"per task; got {config.episodes_per_task}")
    check_out_dir(config.out_dir(), "out")


def check_out_dir(path: Path, key: str = "out") -> None:
    """A directory we can create or write into; says plainly what is wrong before anything is made."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise SettingError(f"--{key} {path} is an existing file, not a directory; name a directory for the run")
    _check_creatable(path, key, "directory")


def check_out_file(path: Path, key: str = "out") -> None:
    """A file we can write: not a directory, under a writable directory (missing folders are made)."""
    path = Path(path)
    if path.is_dir():
        raise SettingError(f"--{key} {path} is a directory; name the file to write")
    if path.exists() and not os.access(path, os.W_OK):
        raise SettingError(f"--{key} {path} exists and is not writable")
    _check_creatable(path.parent, key, "file", shown=path)


def _check_creatable(folder: Path, key: str, what: str, shown: Optional[Path] = None) -> None:
    """The first existing ancestor of `folder` (or itself) is a directory we may write into."""
    shown = shown or folder
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise SettingError(f"--{key} {shown}: {existing} is a file, so the {what} cannot be created there")
    if not os.access(existing, os.W_OK | os.X_OK):
        where = "is not writable" if existing == shown else f"cannot be created: {existing} is not writable"
        raise SettingError(f"--{key} {shown} {where}; choose another path or fix its permissions")


def parse_tasks(value) -> Optional[list[int]]:
    """`--tasks 0,2` or YAML `tasks: [0, 2]` / `tasks: "0,2"` / `tasks: 3` -> [0, 2]."""
    if value is None or isinstance(value, list):
        return value
    if isinstance(value, (tuple, range)):
        return list(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return [value]
    if isinstance(value, str):
        try:
            return [int(t) for t in value.split(",") if t.strip()]
        except ValueError:
            raise _bad("tasks", value, "task ids separated by commas (e.g. 0,2,5)") from None
    raise _bad("tasks", value, "a list of task ids (e.g. [0, 2]) or a comma-separated string")


def normalize_video(value):
    """`video`: false (none), true or "all", "failures", "successes", or N (the first N init states of each
    task) -> False, one of VIDEO_CHOICES, or an int >= 1. `--video 3` arrives as the string "3"."""
    if isinstance(value, bool):
        return "all" if value else False
    if isinstance(value, str) and value.strip().lower() in VIDEO_CHOICES:
        return value.strip().lower()
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if _is_int(value) and value >= 1:
        return int(value)
    raise _bad("video", value, "true or false (an unquoted YAML boolean; quoted 'no' is a string), all, failures, "
                               "successes, or N >= 1 (videos of the first N init states of each task)")


def _check_int(key: str, value, low: int, optional: bool) -> None:
    if value is None and optional:
        return
    if not _is_int(value) or value < low:
        raise _bad(key, value, f"an integer >= {low}")


def _check_suites(suites) -> None:
    from evalkit.core import registry

    if not isinstance(suites, (list, tuple)) or not suites or not all(isinstance(s, str) and s for s in suites):
        raise _bad("suites", suites, "a list of suite names (or one comma-separated string)")
    _refuse_duplicates("suites", suites)
    for name in suites:
        registry.target("suite", name)  # unknown names: the registry suggests the closest


def _check_policy_args(args) -> None:
    if not isinstance(args, dict) or not all(isinstance(k, str) and k for k in args):
        raise _bad("policy_args", args, "a mapping of argument names to values (e.g. {chunk_size: 5})")


def _check_tasks(tasks) -> None:
    if tasks is None:
        return
    if not isinstance(tasks, (list, tuple)) or not tasks or not all(_is_int(t) and t >= 0 for t in tasks):
        raise _bad("tasks", tasks, "a non-empty list of task ids >= 0 (leave it out for all tasks)")
    _refuse_duplicates("tasks", tasks)


def parse_shard(value) -> Optional[tuple[int, int]]:
    """`--shard I/N` (YAML `shard: I/N`): shard I (0-based) of N -> (I, N); None (no sharding) -> None."""
    if value is None:
        return None
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", value) if isinstance(value, str) else None
    if match is None or not int(match[1]) < int(match[2]):
        raise SettingError(f"run setting 'shard': expected I/N with 0 <= I < N, like 0/4 (got {value!r})")
    return int(match[1]), int(match[2])


def _check_mode(mode: str) -> None:
    from evalkit.core.execution import REFERENCE_MODE, parse_mode

    if mode != REFERENCE_MODE:
        try:
            parse_mode(mode)
        except ValueError as exc:
            raise SettingError(f"run setting 'mode': {exc}") from None


def _refuse_duplicates(key: str, values) -> None:
    repeated = sorted({v for v in values if list(values).count(v) > 1})
    if repeated:  # the same episode twice would be stored twice (a database constraint fails mid-run)
        raise SettingError(f"run setting {key!r} repeats {', '.join(map(str, repeated))}; name each once")


def _bad(key: str, value, expected: str) -> SettingError:
    return SettingError(f"run setting {key!r} must be {expected}; got {value!r} ({type(value).__name__})")
