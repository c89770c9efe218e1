"""`--shard I/N`: run a deterministic 1/N of a run's episodes, for clusters without Ray (a Slurm array, say).

Shard I gets episodes I, I+N, I+2N, ... of the run's episode list in its defined order (suites as given,
then tasks, then init states): the same command always gives the same shard, the shards are disjoint,
cover the run, and differ in size by at most one episode (each holds a slice of every task, so they
take about the same time). The shard is not part of the run identity: all shards of one run share
it, which is what lets `evalkit merge` (evalkit/results/merge.py) check that they belong together.
Each shard directory records, in its store's `shard` meta, its index and count and the full run's
episode keys, so that a merge can name the episodes no shard holds.
"""

from __future__ import annotations

from typing import Optional, Sequence

from evalkit.core.settings import parse_shard
from evalkit.results.store import ResultStore, RunMismatch

META_KEY = "shard"


def shard_of(episodes: Sequence, shard: Optional[str]) -> list:
    """The episodes shard `shard` ("I/N") runs: every N-th, starting at the I-th; all of them for None."""
    if shard is None:
        return list(episodes)
    index, count = parse_shard(shard)
    return [episode for i, episode in enumerate(episodes) if i % count == index]


def shard_record(shard: str, run_episodes: Sequence) -> dict:
    """What a shard directory records about itself (store meta `shard`)."""
    index, count = parse_shard(shard)
    keys = [episode.key for episode in run_episodes]
    return {"index": index, "count": count, "episodes_in_run": len(keys), "keys": keys}


def describe(record: Optional[dict]) -> str:
    return "no shard (a whole run)" if record is None else f"shard {record['index']}/{record['count']}"


def bind_shard(store: ResultStore, shard: Optional[str], run_episodes: Sequence) -> None:
    """Record this run's shard in the run directory, or refuse a directory that holds results of another
    shard (or of the whole run, or of a shard of another episode list): one directory, one shard."""
    stored = store.meta(META_KEY)
    wanted = shard_record(shard, run_episodes) if shard is not None else None
    if stored != wanted and _has_results(store):
        same_shard = (stored is not None and wanted is not None
                      and (stored["index"], stored["count"]) == (wanted["index"], wanted["count"]))
        if same_shard:  # the same shard of another episode list: --suite, --tasks or --episodes-per-task changed
            raise RunMismatch(
                f"{store.run_dir} holds {describe(stored)} of another list of episodes ({stored['episodes_in_run']} "
                f"in that run, {wanted['episodes_in_run']} in this one: other --suite, --tasks or --episodes-per-task), "
                "which deals the episodes to the shards differently. Use another --out directory for this run's shards")
        hint = ("merge the shards with `evalkit merge DIR... --out OUT`, then run this command with --out OUT"
                if wanted is None else "give each shard its own --out directory")
        raise RunMismatch(f"{store.run_dir} holds results of {describe(stored)}; this run is {describe(wanted)}. "
                          f"A directory holds one shard of a run: {hint}")
    if wanted is not None:
        store.set_meta(META_KEY, wanted)
    elif stored is not None:  # an empty directory a shard once claimed, now used for the whole run
        with store.db:
            store.db.execute("DELETE FROM meta WHERE key = ?", (META_KEY,))


def _has_results(store: ResultStore) -> bool:
    return store.db.execute("SELECT 1 FROM episodes LIMIT 1").fetchone() is not None
