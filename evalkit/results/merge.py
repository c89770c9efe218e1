"""`evalkit merge DIR... --out OUT`: combine the shard directories of one run (`evalkit run --shard I/N`,
evalkit/run/shards.py) into one run directory.

Shards merge only when they are shards of one run made on one simulator; otherwise the merge is
refused (RunMismatch, `evalkit merge` exits 2) naming the directories and what differs:

- the run identity (policy, arguments, mode, protocol, seed, image size, assets), the recorded semantics
  and policy spec, the suites' records and the committed reference fingerprints;
- how the run was split: another shard count N, or another episode list (--suite, --tasks, --episodes-per-task);
- the simulator packages their sessions recorded (mujoco, robosuite, hf-libero, bddl, sapien, ...);
  other packages that differ (torch, transformers, evalkit's git revision) are listed, not refused;
- drift: some shards' settled states differ from the committed reference while others' match it;
- an episode stored in two shards (or in OUT already) with different results.

An episode stored twice with the same result is kept once and listed. Episodes of the run that no
shard holds are listed (count and the first keys); OUT is written all the same, with the shards'
identity, so re-running the shards' command without --shard and with `--out OUT` finishes them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import platform
import re
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

from evalkit.core.settings import check_out_dir
from evalkit.core.types import EpisodeResult
from evalkit.results.report import checked_against_reference, drifted_tasks
from evalkit.results.store import DB_NAME, FAULTS, ResultStore, RunLock, RunLocked, RunMismatch, _flatten

# Packages whose version changes the physics or rendering: shards made with different ones are not one run.
SIMULATOR_PACKAGES = ("mujoco", "robosuite", "hf-libero", "libero", "bddl", "sapien", "mani_skill2_real2sim",
                      "simpler_env", "simpler-env")
# Recorded meta that must agree between shards (beside the identity); copied into OUT.
SHARED_META = ("semantics", "policy_spec", "suites", "reference_fingerprints")
SHOWN_KEYS = 5  # keys listed in a message before "..."


@dataclass
class Shard:
    dir: str
    identity: dict
    record: dict  # the store's `shard` meta: index, count, episodes_in_run, keys
    meta: dict  # SHARED_META
    sessions: list
    results: list

    @property
    def label(self) -> str:
        return f"{self.dir} (shard {self.record['index']}/{self.record['count']})"


@dataclass
class MergeReport:
    out: Path
    sources: list  # the shard directories, as given
    shard_count: int
    shards: list  # the shard indices given, sorted
    episodes_in_run: int
    written: int  # episodes this merge wrote to OUT
    already: int  # episodes OUT held already (with the same result)
    duplicated: list = field(default_factory=list)  # keys held by several shards with one result (kept once)
    missing: list = field(default_factory=list)  # keys of the run no shard holds
    notes: list = field(default_factory=list)

    @property
    def missing_shards(self) -> list:
        return [i for i in range(self.shard_count) if i not in self.shards]

    @property
    def complete(self) -> bool:
        return not self.missing

    def text(self) -> str:
        held = self.episodes_in_run - len(self.missing)
        lines = [f"merged {len(self.sources)} shard director{'y' if len(self.sources) == 1 else 'ies'} "
                 f"({', '.join(map(str, self.sources))}) into {self.out}: {held} of {self.episodes_in_run} episodes of "
                 f"the run ({self.written} written now"
                 + (f", {self.already} already there" if self.already else "") + ")"]
        if self.duplicated:
            lines.append(f"duplicated: {len(self.duplicated)} episode(s) stored in more than one shard with the same "
                         f"result, kept once: {_first(self.duplicated)}")
        if self.missing:
            absent = (f"; shard(s) {', '.join(f'{i}/{self.shard_count}' for i in self.missing_shards)} not given"
                      if self.missing_shards else "")
            lines.append(f"missing: {len(self.missing)} of {self.episodes_in_run} episodes are in no shard"
                         f"{absent}: {_first(self.missing)}. Re-run the shards' command without --shard and with "
                         f"--out {self.out} to run them")
        lines.extend(self.notes)
        return "\n".join(lines)


def merge_runs(dirs: Sequence, out, provenance: Optional[dict] = None) -> MergeReport:
    """Merge shard directories of one run into `out` (created, or a directory holding this run already);
    `provenance` is added to the session OUT records (the CLI adds the git revision)."""
    dirs = [str(d) for d in dirs]
    out = Path(out)
    if not dirs:
        raise ValueError("evalkit merge: name the shard directories to merge")
    resolved = [Path(d).resolve() for d in dirs]
    repeated = sorted({d for d, r in zip(dirs, resolved) if resolved.count(r) > 1})
    if repeated:
        raise ValueError(f"evalkit merge: {', '.join(repeated)} given more than once")
    if out.resolve() in resolved:
        raise ValueError(f"--out {out} is one of the shards being merged; merge into another directory")
    check_out_dir(out)
    with contextlib.ExitStack() as locks:
        for d in dirs:  # a shard still being written would be merged half done
            _lock_if_possible(locks, d)
        shards = [_read_shard(d) for d in dirs]
        _refuse_mismatches(shards)
        results, duplicated = _union(shards)
        run_keys = shards[0].record["keys"]
        missing = [k for k in run_keys if k not in results]
        _refuse_foreign_out(out)
        locks.enter_context(RunLock(out))
        with ResultStore(out) as store:
            existing = _bind_out(store, shards[0])
            conflicts = [k for k in results if k in existing and _outcome(existing[k]) != _outcome(results[k])]
            if conflicts:
                raise RunMismatch(f"{out} already holds {len(conflicts)} of these episodes with other results than "
                                  f"the shards': {_first(conflicts)}. Merge into a new directory")
            for key in SHARED_META:
                store.set_meta(key, shards[0].meta[key])
            report = MergeReport(out, dirs, shards[0].record["count"], sorted({s.record["index"] for s in shards}),
                                 len(run_keys), written=0, already=sum(k in existing for k in results),
                                 duplicated=duplicated, missing=missing, notes=_notes(shards, results))
            store.set_meta("merged", {"from": dirs, "shard_count": report.shard_count, "shards": report.shards,
                                      "episodes_in_run": len(run_keys), "keys": run_keys, "missing": len(missing),
                                      "duplicated": len(duplicated)})
            store.start_session(_provenance(shards, dirs, out, provenance))
            for key, result in results.items():
                if key not in existing:
                    store.add(_with_video_copied(result, shards, out))
                    report.written += 1
    return report


# -- reading and checking ------------------------------------------------------------------------

def _lock_if_possible(locks: contextlib.ExitStack, run_dir: str) -> None:
    if not (Path(run_dir) / DB_NAME).exists():
        return  # _read_shard names it
    try:
        locks.enter_context(RunLock(run_dir))
    except RunLocked:
        raise RunLocked(f"cannot merge {run_dir} yet: a run is still writing to it; merge it when that run has "
                        "finished") from None
    except OSError:  # a shard we may read but not write (nobody writes it as us either)
        pass


def _read_shard(run_dir: str) -> Shard:
    with ResultStore(run_dir, readonly=True) as store:
        record = store.meta("shard")
        if record is None:
            raise RunMismatch(f"{run_dir} is not a shard: it was run without --shard I/N (evalkit merge combines the "
                              "shard directories of one run; resume a whole run with its own command instead)")
        return Shard(run_dir, store.meta("identity", {}), record, {k: store.meta(k, {}) for k in SHARED_META},
                     store.sessions(), store.results())


def _refuse_mismatches(shards: list) -> None:
    first = shards[0]
    for shard in shards[1:]:
        if shard.record["count"] != first.record["count"]:
            raise RunMismatch(f"cannot merge shards of different splits: {first.label} and {shard.label}; all shards "
                              "of a run are made with the same N in --shard I/N")
        differences = _differences(first.identity, shard.identity)
        if differences:
            raise RunMismatch(f"cannot merge shards of differently configured runs: {first.dir} and {shard.dir} differ "
                              f"in {'; '.join(differences)}")
        for key in SHARED_META:
            differences = _differences(first.meta[key], shard.meta[key], prefix=f"{key}.")
            if differences:
                raise RunMismatch(f"cannot merge: {first.dir} and {shard.dir} recorded different {key} "
                                  f"({'; '.join(differences[:SHOWN_KEYS])}{'; ...' if len(differences) > SHOWN_KEYS else ''}); "
                                  "they were made by different evalkit versions or suite definitions")
        if shard.record["keys"] != first.record["keys"]:
            raise RunMismatch(
                f"cannot merge shards of different episode lists: {first.dir} splits a run of "
                f"{first.record['episodes_in_run']} episodes, {shard.dir} one of {shard.record['episodes_in_run']}"
                f"{_key_difference(first.record['keys'], shard.record['keys'])} (other --suite, --tasks or "
                "--episodes-per-task)")
    _refuse_other_simulators(shards)
    _refuse_mixed_drift(shards)


def _differences(a: dict, b: dict, prefix: str = "") -> list:
    """'key: A vs B' for each flattened setting that differs (as ResultStore.claim names them)."""
    a, b = _flatten(a or {}, prefix), _flatten(b or {}, prefix)
    return [f"{k}: {a.get(k)!r} vs {b.get(k)!r}" for k in sorted(set(a) | set(b))
            if a.get(k) != b.get(k) and not k.endswith("protocol.description")]


def _key_difference(a: list, b: list) -> str:
    only_a, only_b = [k for k in a if k not in set(b)], [k for k in b if k not in set(a)]
    parts = ([f"only the first: {_first(only_a)}"] if only_a else []) + ([f"only the second: {_first(only_b)}"] if only_b else [])
    return f" ({'; '.join(parts)})" if parts else " (the same episodes in another order)"


def _canonical(package: str) -> str:
    return re.sub(r"[-_.]+", "-", package).lower()


def _versions(shard: Shard, simulator: bool) -> dict:
    """{package: sorted versions over the shard's sessions} of the simulator packages (or the others)."""
    wanted = {_canonical(p) for p in SIMULATOR_PACKAGES}
    packages = {_canonical(p) for s in shard.sessions for p in s.get("versions", {})}
    out = {}
    for package in sorted(p for p in packages if (p in wanted) == simulator):
        versions = {next((v for k, v in s.get("versions", {}).items() if _canonical(k) == package), "not installed")
                    for s in shard.sessions}
        out[package] = sorted(versions)
    return out


def _refuse_other_simulators(shards: list) -> None:
    tables = [_versions(s, simulator=True) for s in shards]
    packages = sorted({p for table in tables for p in table})
    for shard, table in zip(shards[1:], tables[1:]):
        differ = [p for p in packages if table.get(p, ["not installed"]) != tables[0].get(p, ["not installed"])]
        if differ:
            raise RunMismatch(
                "cannot merge shards made with different simulator versions: "
                + "; ".join(f"{p} {', '.join(tables[0].get(p, ['not installed']))} in {shards[0].dir}, "
                            f"{', '.join(table.get(p, ['not installed']))} in {shard.dir}" for p in differ)
                + ". Their physics may differ; re-run the odd shards with the same installation")


def _refuse_mixed_drift(shards: list) -> None:
    """Shards whose settled states differ from the committed reference beside shards whose states match
    it: their physics differ. (A shard with no episode in the reference sample tells neither.)"""
    drifted, clean = [], []
    for shard in shards:
        reference = shard.meta["reference_fingerprints"] or {}
        tasks = drifted_tasks(reference, shard.results)
        if tasks:
            drifted.append(f"{shard.dir} ({', '.join(tasks[:SHOWN_KEYS])}{', ...' if len(tasks) > SHOWN_KEYS else ''})")
        elif checked_against_reference(reference, shard.results):
            clean.append(shard.dir)
    if drifted and clean:
        raise RunMismatch(f"cannot merge shards made on different physics: the settled states of {'; '.join(drifted)} "
                          f"differ from the committed reference, those of {', '.join(clean)} match it "
                          "(a drifted simulator on some nodes; run `evalkit doctor` there)")


def _outcome(result: EpisodeResult) -> tuple:
    """What must agree for two results of one episode to be the same result (not timings or paths)."""
    return (result.success, result.termination, result.steps, result.queries, result.settle_fingerprint,
            result.undecodable, json.dumps(result.stats, sort_keys=True), json.dumps(result.params, sort_keys=True))


def _union(shards: list) -> tuple[dict, list]:
    """{key: result} over the shards in the run's episode order (then any others), and the keys stored
    twice with one result; keys stored twice with different results are refused."""
    results, owners, duplicated, conflicts = {}, {}, [], []
    for shard in shards:
        for result in shard.results:
            if result.key not in results:
                results[result.key], owners[result.key] = result, shard.dir
            elif _outcome(results[result.key]) == _outcome(result):
                duplicated.append(result.key)
            else:
                conflicts.append(f"{result.key} ({owners[result.key]}: {_describe(results[result.key])}; "
                                 f"{shard.dir}: {_describe(result)})")
    if conflicts:
        raise RunMismatch(f"cannot merge: {len(conflicts)} episode(s) are stored in two shards with different results: "
                          f"{'; '.join(conflicts[:SHOWN_KEYS])}{'; ...' if len(conflicts) > SHOWN_KEYS else ''}")
    order = {k: i for i, k in enumerate(shards[0].record["keys"])}
    ordered = dict(sorted(results.items(), key=lambda item: (order.get(item[0], len(order)), item[0])))
    return ordered, sorted(set(duplicated), key=lambda k: (order.get(k, len(order)), k))


def _describe(result: EpisodeResult) -> str:
    return f"{'success' if result.success else result.termination}, {result.steps} steps"


def _refuse_foreign_out(out: Path) -> None:
    if out.is_dir() and any(out.iterdir()) and not (out / DB_NAME).exists():
        raise ValueError(f"--out {out} is a non-empty directory holding no evalkit run; name a new directory")


def _bind_out(store: ResultStore, first: Shard) -> dict:
    """Claim OUT for the shards' run (refused when it holds another run, or a shard); its results by key."""
    if store.meta("shard") is not None:
        raise RunMismatch(f"--out {store.run_dir} holds shard {store.meta('shard')['index']}/"
                          f"{store.meta('shard')['count']} of a run; merge into another directory")
    store.claim(first.identity)
    return {r.key: r for r in store.results()}


# -- writing -------------------------------------------------------------------------------------

def _notes(shards: list, results: dict) -> list:
    notes = []
    tables = [_versions(s, simulator=False) for s in shards]
    differ = sorted(p for p in {p for t in tables for p in t} if len({tuple(t.get(p, ["not recorded"])) for t in tables}) > 1)
    if differ:
        notes.append("note: the shards were made with different versions of " + "; ".join(
            f"{p} ({', '.join(sorted({v for t in tables for v in t.get(p, ['not recorded'])}))})" for p in differ))
    revisions = sorted({str(s.get("git", "unknown")) for shard in shards for s in shard.sessions})
    if len(revisions) > 1:
        notes.append(f"note: the shards were made at different evalkit revisions ({', '.join(revisions)})")
    faults = [k for k, r in results.items() if r.termination in FAULTS]
    if faults:
        notes.append(f"note: {len(faults)} episode(s) are stored as error or timeout ({_first(faults)}); re-run the "
                     "shards' command without --shard, with --out and --retry-errors, to play them again")
    return notes


def _provenance(shards: list, dirs: list, out: Path, extra: Optional[dict]) -> dict:
    """The session OUT records: merged from DIRS, with the shards' recorded config (less the shard) and the
    versions of the first shard's latest session."""
    latest = shards[0].sessions[-1] if shards[0].sessions else {}
    config = dict(latest.get("config", {}))
    config.update(shard=None, out=str(out))
    return {"merged_from": dirs, "config": config, "versions": latest.get("versions", {}),
            "shards": [{"dir": s.dir, "shard": f"{s.record['index']}/{s.record['count']}",
                        "git": sorted({str(x.get("git", "unknown")) for x in s.sessions})} for s in shards],
            "python": sys.version.split()[0], "platform": platform.platform(), "argv": list(sys.argv),
            **(extra or {})}


def _with_video_copied(result: EpisodeResult, shards: list, out: Path) -> EpisodeResult:
    """A shard's episode video, copied into OUT/videos (the path it records follows it)."""
    if not result.video:
        return result
    source = Path(result.video)
    candidates = [source] + [Path(s.dir) / "videos" / source.name for s in shards]
    found = next((c for c in candidates if c.is_file()), None)
    if found is None:
        return result  # keep the recorded path: the video was moved or deleted before the merge
    target = out / "videos" / source.name
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(found, target)
    return dataclasses.replace(result, video=str(target))


def _first(keys: Sequence) -> str:
    return ", ".join(keys[:SHOWN_KEYS]) + (f", ... ({len(keys) - SHOWN_KEYS} more)" if len(keys) > SHOWN_KEYS else "")
