"""Policy adapters. Each is registered by name in `evalkit.core.registry` and imported only when chosen."""
