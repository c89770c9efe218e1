"""Running episodes: the episode loop, worker processes, the supervisor, the run driver, sweeps and videos."""
