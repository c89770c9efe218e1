"""Results store: one SQLite file per run directory, one row per finished episode.

Rows are committed as each episode finishes (WAL journal), so killing a run loses at
most the episodes in flight, and re-running the same command skips finished ones.
The run's identity (policy, arguments, execution mode, protocol, seed, env options)
is stored once; resuming with a different identity is refused, since mixing the two
would make the table meaningless.
"""

from __future__ import annotations

import dataclasses
import errno
import fcntl
import json
import os
import sqlite3
import time
from pathlib import Path
from typing import Any, Iterable, Optional

from evalkit.core.execution import normalize_mode
from evalkit.core.types import EpisodeResult, EpisodeSpec

# v2 added episodes.settle_fingerprint and episodes.undecodable, v3 episodes.params (JSON); older stores and exports
# are read (and older stores upgraded in place when written to), the missing values reading as "", 0 and {}.
SCHEMA_VERSION = 3
READABLE_VERSIONS = (1, 2, 3)
DB_NAME = "results.sqlite"

_COLUMNS = {
    "suite": "TEXT NOT NULL",
    "task_id": "INTEGER NOT NULL",
    "task_name": "TEXT NOT NULL",
    "init_index": "INTEGER NOT NULL",
    "seed": "INTEGER NOT NULL",
    "success": "INTEGER NOT NULL",
    "termination": "TEXT NOT NULL",
    "steps": "INTEGER NOT NULL",
    "queries": "INTEGER NOT NULL",
    "wall_s": "REAL NOT NULL",
    "policy_s": "REAL NOT NULL",
    "error": "TEXT NOT NULL",
    "video": "TEXT NOT NULL",
    "settle_fingerprint": "TEXT NOT NULL DEFAULT ''",
    "undecodable": "INTEGER NOT NULL DEFAULT 0",
    "params": "TEXT NOT NULL DEFAULT '{}'",
}
_JSON_COLUMNS = ("params",)


FAULTS = ("error", "timeout")  # terminations `--retry-errors` runs again: the episode never got a fair run


class RunMismatch(ValueError):
    """The run directory holds results of a differently configured run."""


class RunLocked(RuntimeError):
    """Another process is writing to the run directory."""


class RunLock:
    """An exclusive lock on a run directory, held while a run writes to it (released by the kernel
    when the process dies, so a killed run never leaves a stale lock behind)."""

    NAME = ".evalkit.lock"

    def __init__(self, run_dir: str | Path):
        self.path = Path(run_dir) / self.NAME
        self.file = None

    def __enter__(self) -> "RunLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.file = open(self.path, "a+")
        try:
            fcntl.flock(self.file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            self.file.seek(0)
            holder = self.file.read().strip() or "another process"
            self.file.close()
            raise RunLocked(f"{self.path.parent} is in use: {holder} is writing to it. Wait for that run to "
                            "finish (or stop it), or pass another --out") from None
        self.file.seek(0)
        self.file.truncate()
        self.file.write(f"evalkit pid {os.getpid()}")
        self.file.flush()
        return self

    def __exit__(self, *exc) -> None:
        if self.file is not None:
            self.file.close()  # closing releases the lock


class ResultStore:
    def __init__(self, run_dir: str | Path, readonly: bool = False):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / DB_NAME
        if readonly and not self.path.exists():
            raise FileNotFoundError(f"no results in {self.run_dir} (expected {self.path}); is it a run directory?")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        try:
            self.db = sqlite3.connect(self.path, timeout=30)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")  # durable across process kills
            if not readonly:
                self._create()
            self._check_schema()
        except sqlite3.DatabaseError as exc:
            raise RunMismatch(f"{self.path} is not a readable evalkit results store ({exc}). Move it away to start "
                              "this run over, or pass another --out") from None

    def _create(self) -> None:
        columns = ", ".join(f"{name} {kind}" for name, kind in _COLUMNS.items())
        with self.db:
            self.db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            self.db.execute(f"CREATE TABLE IF NOT EXISTS episodes (key TEXT PRIMARY KEY, {columns}, "
                            "session INTEGER NOT NULL, finished_at REAL NOT NULL)")
            self.db.execute("CREATE TABLE IF NOT EXISTS sessions (id INTEGER PRIMARY KEY, started_at REAL, "
                            "provenance TEXT NOT NULL)")
            # Suite-specific episode statistics (EpisodeResult.stats), only for episodes that have some;
            # a table of its own, so that stores written before it existed read unchanged.
            self.db.execute("CREATE TABLE IF NOT EXISTS episode_stats (key TEXT PRIMARY KEY, stats TEXT NOT NULL)")
            # Episodes being run now (see evalkit.run.supervisor): written before an episode starts and before each
            # policy query, removed with the episode's result. They let a supervisor that saw its run process die
            # or hang tell which episode did it; left by a run killed from outside, they are simply run again.
            self.db.execute("CREATE TABLE IF NOT EXISTS in_flight (key TEXT PRIMARY KEY, episode TEXT NOT NULL, "
                            "pid INTEGER NOT NULL, phase TEXT NOT NULL, started_at REAL NOT NULL, "
                            "phase_deadline REAL, episode_deadline REAL, deaths INTEGER NOT NULL DEFAULT 0, "
                            "solo INTEGER NOT NULL DEFAULT 0)")
            # Results that `--retry-errors` replaced, kept so that nothing is lost.
            self.db.execute("CREATE TABLE IF NOT EXISTS retried (key TEXT NOT NULL, result TEXT NOT NULL, "
                            "retried_at REAL NOT NULL)")
            self.db.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (json.dumps(SCHEMA_VERSION),))
            self._upgrade()

    def _upgrade(self) -> None:
        """Add the columns an older store lacks (their defaults stand for 'not recorded')."""
        present = self._present_columns()
        for name, kind in _COLUMNS.items():
            if name not in present:
                self.db.execute(f"ALTER TABLE episodes ADD COLUMN {name} {kind}")
        self.db.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", (json.dumps(SCHEMA_VERSION),))

    def _present_columns(self) -> set[str]:
        return {row[1] for row in self.db.execute("PRAGMA table_info(episodes)")}

    def _check_schema(self) -> None:
        version = self.meta("schema_version")
        if version is not None and version not in READABLE_VERSIONS:
            raise RunMismatch(f"{self.path} has result schema v{version}; this evalkit reads "
                              f"v{', v'.join(map(str, READABLE_VERSIONS))}")

    def meta(self, key: str, default: Any = None) -> Any:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else default

    def set_meta(self, key: str, value: Any) -> None:
        with self.db:
            self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, json.dumps(value, sort_keys=True)))

    def claim(self, identity: dict) -> None:
        """Bind this directory to a run identity, or check that it is the same one (in one
        transaction, so two processes claiming at once cannot both bind it)."""
        identity = json.loads(json.dumps(identity, sort_keys=True))  # normalise tuples etc.
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            stored = self.meta("identity")
            if stored is None or "seed" not in stored or _spelled_otherwise(stored.get("mode")):
                stored = identity if stored is None else self._complete_identity(stored)
                self.db.execute("INSERT OR REPLACE INTO meta VALUES ('identity', ?)", (json.dumps(stored, sort_keys=True),))
        if stored != identity:
            old, new = _flatten(stored), _flatten(identity)
            diffs = [f"{k}: stored {old.get(k)!r}, now {new.get(k)!r}"
                     for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k) and k != "protocol.description"]
            raise RunMismatch(
                f"{self.run_dir} holds results of a differently configured run ({'; '.join(diffs)}). "
                "Use another --out directory, or delete this one to start over."
            )

    def _complete_identity(self, stored: dict) -> dict:
        """An identity written by an older evalkit: the seed taken from the sessions' recorded config
        (it was not part of the identity), the mode in its normal spelling."""
        if "seed" not in stored:
            seeds = {s.get("config", {}).get("seed", 0) for s in self.sessions()} or {0}
            stored = {**stored, "seed": seeds.pop() if len(seeds) == 1 else sorted(seeds)}
        if _spelled_otherwise(stored.get("mode")):
            stored = {**stored, "mode": normalize_mode(stored["mode"])}
        return stored

    def start_session(self, provenance: dict) -> int:
        with self.db:
            cur = self.db.execute("INSERT INTO sessions (started_at, provenance) VALUES (?, ?)",
                                  (time.time(), json.dumps(provenance, sort_keys=True)))
        self.session = int(cur.lastrowid)
        return self.session

    def add(self, result: EpisodeResult) -> None:
        values = [getattr(result, name) for name in _COLUMNS]
        values[list(_COLUMNS).index("success")] = int(result.success)
        for name in _JSON_COLUMNS:
            values[list(_COLUMNS).index(name)] = json.dumps(getattr(result, name), sort_keys=True)
        with self.db:  # one transaction per episode
            self.db.execute(
                f"INSERT INTO episodes (key, {', '.join(_COLUMNS)}, session, finished_at) "
                f"VALUES ({', '.join('?' * (len(_COLUMNS) + 3))})",
                [result.key, *values, getattr(self, "session", 0), time.time()],
            )
            if result.stats:
                self.db.execute("INSERT INTO episode_stats VALUES (?, ?)", (result.key, json.dumps(result.stats)))
            self.db.execute("DELETE FROM in_flight WHERE key = ?", (result.key,))

    # Episodes in flight (see evalkit.run.supervisor) -------------------------------------------------

    def mark_started(self, episode: EpisodeSpec, episode_deadline: Optional[float], solo: bool = False) -> None:
        """Before an episode starts: who runs it and until when (its death count survives re-runs)."""
        with self.db:
            self.db.execute(
                "INSERT INTO in_flight (key, episode, pid, phase, started_at, phase_deadline, episode_deadline, deaths, "
                "solo) VALUES (?, ?, ?, 'env', ?, NULL, ?, COALESCE((SELECT deaths FROM in_flight WHERE key = ?), 0), ?) "
                "ON CONFLICT(key) DO UPDATE SET pid = excluded.pid, phase = 'env', started_at = excluded.started_at, "
                "phase_deadline = NULL, episode_deadline = excluded.episode_deadline, solo = excluded.solo",
                (episode.key, json.dumps(dataclasses.asdict(episode)), os.getpid(), time.time(), episode_deadline,
                 episode.key, int(solo)))

    def mark_phase(self, keys: Iterable[str], phase: str, deadline: Optional[float] = None) -> None:
        """'query' (with the query's deadline) before the policy is asked, 'env' after it answered."""
        with self.db:
            self.db.executemany("UPDATE in_flight SET phase = ?, phase_deadline = ? WHERE key = ?",
                                [(phase, deadline, key) for key in keys])

    def in_flight(self) -> list[dict]:
        rows = self.db.execute("SELECT key, episode, pid, phase, started_at, phase_deadline, episode_deadline, deaths, "
                               "solo FROM in_flight ORDER BY started_at")
        names = ("key", "episode", "pid", "phase", "started_at", "phase_deadline", "episode_deadline", "deaths", "solo")
        out = [dict(zip(names, row)) for row in rows]
        for row in out:
            row["episode"] = episode_from_json(row["episode"])
        return out

    def record_deaths(self, keys: Iterable[str]) -> None:
        """These episodes were in flight, with others, when their process died: each runs alone next time."""
        with self.db:
            self.db.executemany("UPDATE in_flight SET deaths = deaths + 1, pid = 0 WHERE key = ?", [(k,) for k in keys])

    def retire_faults(self) -> int:
        """`--retry-errors`: move episodes that ended as error or timeout out of the table (kept in `retried`),
        so the run plays them again. Returns how many."""
        faults = [r for r in self.results() if r.termination in FAULTS]
        with self.db:
            for result in faults:
                self.db.execute("INSERT INTO retried VALUES (?, ?, ?)",
                                (result.key, json.dumps(dataclasses.asdict(result)), time.time()))
                self.db.execute("DELETE FROM episodes WHERE key = ?", (result.key,))
                self.db.execute("DELETE FROM episode_stats WHERE key = ?", (result.key,))
        return len(faults)

    def results(self) -> list[EpisodeResult]:
        columns = [name for name in _COLUMNS if name in self._present_columns()]  # an older read-only store
        rows = self.db.execute(f"SELECT {', '.join(columns)} FROM episodes ORDER BY suite, task_id, init_index, seed")
        results = [_to_result(dict(zip(columns, row))) for row in rows]
        stats = self._stats()
        for result in results:
            result.stats = stats.get(result.key, {})
        return results

    def _stats(self) -> dict:
        has_table = self.db.execute("SELECT 1 FROM sqlite_master WHERE name = 'episode_stats'").fetchone()
        return {k: json.loads(v) for k, v in self.db.execute("SELECT key, stats FROM episode_stats")} if has_table else {}

    def sessions(self) -> list[dict]:
        return [{"id": i, "started_at": t, **json.loads(p)}
                for i, t, p in self.db.execute("SELECT id, started_at, provenance FROM sessions ORDER BY id")]

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> "ResultStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _spelled_otherwise(mode) -> bool:
    try:
        return isinstance(mode, str) and normalize_mode(mode) != mode
    except ValueError:
        return False


def _flatten(values: dict, prefix: str = "") -> dict:
    """{"protocol": {"budget": 30}} -> {"protocol.budget": 30}: a refusal names the setting that differs."""
    out = {}
    for key, value in values.items():
        if isinstance(value, dict) and value and key != "policy_args":
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def episode_from_json(text: str) -> EpisodeSpec:
    values = json.loads(text)
    values["params"] = _tuples(values.get("params", ()))
    return EpisodeSpec(**values)


def _tuples(value):
    """JSON turned the spec's (hashable) tuples into lists; turn them back."""
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


def _to_result(row: dict) -> EpisodeResult:
    row["success"] = bool(row["success"])
    for name in _JSON_COLUMNS:
        if isinstance(row.get(name), str):
            row[name] = json.loads(row[name])
    if "params" in row:  # as EpisodeSpec.param_dict() gave them: JSON turned their tuples into lists
        row["params"] = {k: _tuples(v) for k, v in row["params"].items()}
    return EpisodeResult(**row)


def export_run(run_dir: str | Path, out: str | Path) -> int:
    """Write a run as JSON lines (a meta line, then one line per episode): small enough to
    commit as a baseline, unlike the SQLite store. Returns the number of episodes."""
    with ResultStore(run_dir, readonly=True) as store:
        results = store.results()
        meta = {"schema_version": SCHEMA_VERSION, "identity": store.meta("identity"),
                "semantics": store.meta("semantics"), "suites": store.meta("suites"),
                # what `evalkit view` shows beside the numbers: versions and git revision of each session, the
                # reference fingerprints of these episodes (drift), the policy's recorded settings
                "sessions": [{k: s.get(k) for k in ("id", "started_at", "versions", "git", "python", "platform")}
                             for s in store.sessions()],
                "reference_fingerprints": _own_references(store.meta("reference_fingerprints", {}), results),
                "policy_spec": store.meta("policy_spec")}
    lines = [json.dumps({"meta": meta}, sort_keys=True)]
    lines += [json.dumps({name: getattr(r, name) for name in ("key", *_COLUMNS)}, sort_keys=True) for r in results]
    Path(out).write_text("\n".join(lines) + "\n")
    return len(results)


def read_export(path: str | Path) -> tuple[dict, list[EpisodeResult]]:
    """(meta, results) of a file written by export_run."""
    lines = Path(path).read_text().splitlines()
    if not lines or "meta" not in json.loads(lines[0]):
        raise ValueError(f"{path} is not an evalkit export (no meta line); make one with `evalkit export RUN_DIR FILE`")
    meta = json.loads(lines[0])["meta"]
    if meta.get("schema_version") not in READABLE_VERSIONS:
        raise RunMismatch(f"{path} has result schema v{meta.get('schema_version')}; this evalkit reads "
                          f"v{', v'.join(map(str, READABLE_VERSIONS))}")
    rows = [json.loads(line) for line in lines[1:] if line.strip()]
    return meta, [_to_result({k: row[k] for k in _COLUMNS if k in row}) for row in rows]


def _own_references(reference: dict, results) -> dict:
    keys = {r.key for r in results}
    return {suite: {k: v for k, v in by_key.items() if k in keys} for suite, by_key in reference.items()}


class ExportedRun:
    """An `evalkit export` file read like a read-only store: meta, results and, when exported, sessions."""

    def __init__(self, path: str | Path):
        self.run_dir = Path(path)
        self._meta, self._results = read_export(path)

    def meta(self, key: str, default: Any = None) -> Any:
        value = self._meta.get(key)
        return default if value is None else value

    def results(self) -> list[EpisodeResult]:
        return list(self._results)

    def sessions(self) -> list[dict]:
        return list(self._meta.get("sessions") or [])

    def close(self) -> None:
        pass

    def __enter__(self) -> "ExportedRun":
        return self

    def __exit__(self, *exc) -> None:
        pass


def open_run(path: str | Path):
    """A run directory's store (read-only) or an `evalkit export` file, read alike."""
    return ExportedRun(path) if Path(path).is_file() else ResultStore(path, readonly=True)
