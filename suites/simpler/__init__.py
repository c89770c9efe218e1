"""SimplerEnv on SAPIEN: the suites, their episode grids, the fake simulator, reference fingerprints and the official aggregation."""
