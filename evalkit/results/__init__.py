"""Results: the per-episode store, success-rate reports and paired comparisons."""
