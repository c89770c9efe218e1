"""`evalkit run ... --log wandb|trackio`: the finished run in an experiment tracker (extras "wandb" and "trackio").

What goes there, from the store alone: the run's identity, semantics and the session's config,
versions and git revision as the tracker's config; the success rate of each suite and task as
summary values; the per-task report table; and up to `max_videos` failure videos (else any).
The tracker is imported only here, and only when --log is given. Offline use: `WANDB_MODE=offline`
(files under WANDB_DIR), or trackio, which keeps its runs locally unless told to sync to a Space.
"""

from __future__ import annotations

from pathlib import Path

from evalkit.results.report import collect_report, run_labels, task_table, tally_by

TRACKERS = ("wandb", "trackio")


def run_record(run_dir) -> dict:
    """{name, config, summary, table: (headers, rows), videos: [(name, path)]} of a stored run (or export)."""
    from evalkit.results.store import open_run
    from evalkit.results.view import find_video

    with open_run(run_dir) as store:
        results, sessions = store.results(), store.sessions()
        config = {key: store.meta(key, {}) for key in ("identity", "semantics", "suites")}
    last = sessions[-1] if sessions else {}
    config.update(run_config=last.get("config", {}), versions=last.get("versions", {}), git=last.get("git", ""),
                  run_dir=str(run_dir), report_notes=collect_report([run_dir]).notes)
    summary = {"episodes": len(results), "successes": sum(r.success for r in results),
               "errors": sum(r.termination in ("error", "timeout", "invalid_action") for r in results)}
    for suite, tally in tally_by(results, lambda r: r.suite).items():
        summary[f"success/{suite}"] = tally.rate
    for (suite, task), tally in tally_by(results, lambda r: (r.suite, r.task_id)).items():
        summary[f"success/{suite}/task{task:02d}"] = tally.rate
    return {"name": run_labels([run_dir])[0], "config": config, "summary": summary, "table": task_table(results),
            "videos": _videos(results, Path(run_dir), find_video)}


def _videos(results, run_dir: Path, find, max_videos: int = 4) -> list:
    """A few failure videos, else any: [(name, path)]."""
    ordered = [r for r in results if not r.success] + [r for r in results if r.success]
    found = [(r, find(r.video, run_dir)) for r in ordered if r.video]
    return [(f"{r.suite}/task{r.task_id:02d}/init{r.init_index:02d}", str(path)) for r, path in found if path][:max_videos]


def log_run(tracker: str, run_dir, project: str = "evalkit") -> str:
    """Log a finished run; returns where it went (a URL, or the local folder when offline)."""
    if tracker not in TRACKERS:
        raise ValueError(f"unknown tracker {tracker!r}; use {' or '.join(TRACKERS)}")
    record = run_record(run_dir)
    try:
        return (_log_wandb if tracker == "wandb" else _log_trackio)(record, project)
    except ImportError as exc:
        raise RuntimeError(f"--log {tracker} needs the {tracker} package ({exc}); "
                           f"pip install 'evalkit[{tracker}]' (or pip install {tracker})") from None


def _log_wandb(record: dict, project: str) -> str:
    import wandb

    run = wandb.init(project=project, name=record["name"], config=record["config"], job_type="eval")
    try:
        run.summary.update(record["summary"])
        headers, rows = record["table"]
        media = {"report/per_task": wandb.Table(columns=headers, data=rows)}
        media.update({f"videos/{name}": wandb.Video(path, caption=name, format="mp4") for name, path in record["videos"]})
        run.log(media)
        where = run.url or run.dir
    finally:
        run.finish()
    return where


def _log_trackio(record: dict, project: str) -> str:
    import trackio

    trackio.init(project=project, name=record["name"], config=record["config"])
    try:
        headers, rows = record["table"]
        values = dict(record["summary"])
        if hasattr(trackio, "Table"):
            values["report/per_task"] = trackio.Table(columns=headers, data=rows)
        if hasattr(trackio, "Video"):
            values.update({f"videos/{name}": trackio.Video(path, caption=name) for name, path in record["videos"]})
        trackio.log(values)
    finally:
        trackio.finish()
    return f"trackio project {project} (local; `trackio show --project {project}`)"
