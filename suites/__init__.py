"""Benchmark suites. Each is registered by name in `evalkit.registry` and imported only when chosen."""
