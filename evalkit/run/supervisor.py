"""`evalkit run` runs the run in a child process and watches it, so that no episode can end the run.

Faults Python can catch end their own episode in the runner. This layer handles the rest:

- the run process dies (a segfault in a policy or simulator, `os._exit`, the OOM killer): the
  episode it was running is recorded as `error` with the exit status and the fault handler's
  traceback, and a fresh child resumes the run;
- a policy query overruns `query_timeout_s`, or an episode `episode_timeout_s`: the child is
  killed, the episode recorded as `timeout`, and a fresh child resumes.

Which episode? The child writes the episodes it runs, and those waiting on the policy, into the
store's `in_flight` table (evalkit.run.driver.InFlightLog). If several were waiting on one batch when
the process died, none is blamed yet: each is run again alone first, and the one that kills its
process alone is recorded. Episodes merely in flight (a run killed from outside, Ctrl-C) are run
again, so a SIGKILL'd run resumed gives the table of an uninterrupted one.
"""

from __future__ import annotations

import faulthandler
import multiprocessing as mp
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from evalkit.run.workers import describe_exit, die_with_parent, episode_error
from evalkit.results.store import ResultStore, RunLock

FAULT_LOG = ".faults.log"  # the child's fault-handler output (tracebacks of fatal signals)
POLL_S = 0.25
MAX_RESTARTS = 10_000  # every restart records an episode or isolates a batch, so this is only a backstop


class RunInterrupted(Exception):
    """Ctrl-C: the episodes stored so far are kept; re-running the same command resumes."""

    def __init__(self, out: Path, stored: int, total: Optional[int]):
        self.out, self.stored, self.total = out, stored, total
        of_total = f" of {total}" if total is not None else ""
        super().__init__(f"interrupted: {stored}{of_total} episodes stored in {out}; re-run the same command to resume")


@dataclass
class _Child:
    """What the supervisor learnt from one child process."""

    plan: Optional[tuple] = None  # (episodes in the run, episodes already stored)
    error: Optional[BaseException] = None  # raised before or outside the episodes: the run cannot go on
    done: bool = False
    interrupted: bool = False
    overdue: list = field(default_factory=list)  # in-flight rows the watchdog killed the child for
    exitcode: Optional[int] = None
    pid: int = 0


def supervise_run(run, config, progress: bool = True, retry_errors: bool = False) -> Path:
    """Run `config` (evalkit.run.driver.RunConfig) in watched child processes until every episode is
    stored; `run(config, progress, retry_errors, on_plan)` is the run itself (evalkit.run.driver.run_in_process),
    a module-level function so that the child process can import it."""
    out = config.out_dir()
    with RunLock(out):
        for _ in range(MAX_RESTARTS):
            child = _watch(run, config, progress, retry_errors, out)
            retry_errors = False  # retire stored errors once, not the ones this run records
            if child.error is not None:
                raise child.error
            if child.interrupted:
                raise RunInterrupted(out, _stored(out), child.plan[0] if child.plan else None)
            if child.done:
                return out
            _blame(out, child, config)
    raise RuntimeError(f"the run in {out} kept dying; see the messages above")


def _watch(run, config, progress: bool, retry_errors: bool, out: Path) -> _Child:
    ctx = mp.get_context("spawn")
    receiver, sender = ctx.Pipe(duplex=False)
    process = ctx.Process(target=_child_main, args=(sender, run, config, progress, retry_errors), name="evalkit-run")
    process.start()
    sender.close()
    child = _Child(pid=process.pid)
    store = None
    try:
        while True:
            if receiver.poll(POLL_S):
                if not _receive(receiver, child):
                    break  # end of file: the child is gone
            elif not process.is_alive():
                break
            if child.plan is not None and store is None:
                store = ResultStore(out, readonly=True)
            if store is not None and (overdue := _overdue(store, child.pid, config.workers)):
                child.overdue = overdue
                process.kill()
                break
    except KeyboardInterrupt:  # Ctrl-C reached the child too; give it a moment to stop its workers
        child.interrupted = True
        process.join(timeout=10)
        if process.is_alive():
            process.kill()
    finally:
        if store is not None:
            store.close()
    process.join()
    child.exitcode = process.exitcode
    return child


def _receive(receiver, child: _Child) -> bool:
    try:
        kind, *payload = receiver.recv()
    except (EOFError, OSError):
        return False
    if kind == "plan":
        child.plan = tuple(payload)
    elif kind == "error":
        child.error = payload[0]
    elif kind == "interrupted":
        child.interrupted = True
    elif kind == "done":
        child.done = True
    return True


def _overdue(store: ResultStore, pid: int, workers: int) -> list[dict]:
    """In-flight rows of this child past a deadline. With workers, an episode's own limit is the
    parallel runner's to enforce (it kills just that worker); the grace lets it act first."""
    now = time.time()
    grace = 10.0 if workers > 1 else 0.0
    try:
        rows = store.in_flight()
    except Exception:  # the child is writing; look again at the next poll
        return []
    return [row for row in rows if row["pid"] == pid and (
        (row["phase"] == "query" and row["phase_deadline"] is not None and now > row["phase_deadline"])
        or (row["episode_deadline"] is not None and now > row["episode_deadline"] + grace))]


def _blame(out: Path, child: _Child, config) -> None:
    """The child died or was killed: record the episode that did it, or isolate the suspects."""
    with ResultStore(out) as store:
        rows = [row for row in store.in_flight() if row["pid"] == child.pid]
        if child.overdue:
            suspects, termination = child.overdue, "timeout"
        else:
            suspects, termination = [r for r in rows if r["phase"] == "query"] or rows, "error"
        if not suspects:
            raise RuntimeError(f"the run process died ({describe_exit(child.exitcode)}) outside any episode"
                               + _fault_text(out))
        if len(suspects) > 1 and not any(row["solo"] for row in suspects):
            store.record_deaths([row["key"] for row in suspects])
            what = "was killed: a query overran its limit" if child.overdue else f"died ({describe_exit(child.exitcode)})"
            print(f"evalkit: the run process {what} while {len(suspects)} episodes waited on one policy batch; "
                  "running each of them alone to find the culprit", file=sys.stderr, flush=True)
            return
        for row in suspects if len(suspects) == 1 else [r for r in suspects if r["solo"]]:
            reason = _reason(row, child, termination, config) + _fault_text(out)
            store.add(episode_error(row["episode"], reason, termination))
            print(f"evalkit: episode {row['key']} ended as {termination}: {reason.splitlines()[0]}", file=sys.stderr, flush=True)


def _reason(row: dict, child: _Child, termination: str, config) -> str:
    where = "while the policy answered a query" if row["phase"] == "query" else "while the simulator ran"
    if termination == "timeout":
        limit = (f"a policy query overran query_timeout_s={config.query_timeout_s:g}" if row["phase"] == "query"
                 else f"the episode overran episode_timeout_s={config.episode_timeout_s:g}")
        return f"{limit}; the run process was killed and the run resumed"
    return f"the run process died ({describe_exit(child.exitcode)}) {where}; the run resumed without it"


def _fault_text(out: Path) -> str:
    """The fault handler's traceback of the death, if it wrote one (and clear it for the next)."""
    path = out / FAULT_LOG
    try:
        text = path.read_text().strip()
        path.write_text("")
    except OSError:
        return ""
    return f"\nfault handler:\n{text}" if text else ""


def _stored(out: Path) -> int:
    try:
        with ResultStore(out, readonly=True) as store:
            return len(store.results())
    except Exception:
        return 0


def _thread_lock_for_tqdm() -> None:
    """tqdm's default lock is a multiprocessing semaphore, which a killed child leaks (with a warning)."""
    import threading

    from tqdm import tqdm

    tqdm.set_lock(threading.RLock())


def _child_main(sender, run, config, progress: bool, retry_errors: bool) -> None:
    """The run, in the child: report its plan, its end, or the error that stopped it."""
    die_with_parent()
    _thread_lock_for_tqdm()
    out = config.out_dir()
    out.mkdir(parents=True, exist_ok=True)
    fault_log = open(out / FAULT_LOG, "a")
    faulthandler.enable(file=fault_log)  # a fatal signal writes its traceback where the supervisor reads it
    try:
        run(config, progress, retry_errors, on_plan=lambda total, done: sender.send(("plan", total, done)))
        sender.send(("done",))
    except (KeyboardInterrupt, RunInterrupted):
        sender.send(("interrupted",))
    except BaseException as exc:  # the supervisor raises it in the parent: a bad setting, a missing checkpoint
        import traceback

        if not isinstance(exc, (ValueError, FileNotFoundError, TypeError, KeyError)):
            traceback.print_exc()
        try:
            sender.send(("error", exc))
        except Exception:  # an exception that does not pickle
            sender.send(("error", RuntimeError(f"{type(exc).__name__}: {exc}")))
