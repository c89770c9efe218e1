"""Reading run directories in tests."""

from evalkit.results.store import ResultStore


def outcomes(run_dir) -> dict:
    """{episode key: (termination, success, steps, queries)}: what must not depend on how a run ran."""
    with ResultStore(run_dir, readonly=True) as store:
        return {r.key: (r.termination, r.success, r.steps, r.queries) for r in store.results()}


def stored_count(run_dir) -> int:
    """Episodes stored so far (0 while the store does not exist yet or is being created)."""
    try:
        with ResultStore(run_dir, readonly=True) as store:
            return len(store.results())
    except Exception:
        return 0
