import importlib.util

import numpy as np
import pytest

from evalkit.core.types import PolicySpec

HAS_LIBERO = importlib.util.find_spec("libero") is not None and importlib.util.find_spec("robosuite") is not None
HAS_SIMPLER = importlib.util.find_spec("simpler_env") is not None


def pytest_collection_modifyitems(config, items):
    skips = []
    if not HAS_LIBERO:
        skips.append(("libero", pytest.mark.skip(reason="hf-libero not installed (pip install the libero extra, see README)")))
    if not HAS_SIMPLER:
        skips.append(("simpler", pytest.mark.skip(reason="simpler_env not importable (bash scripts/setup_simpler.sh, "
                                                          "then run the tests with .venv-simpler/bin/python)")))
    for item in items:
        for marker, skip in skips:
            if marker in item.keywords:
                item.add_marker(skip)


class CountingPolicy:
    """Chunk k (0-based) holds rows [100*k + i, ...]: every action says which query and row it came from."""

    def __init__(self, chunk_size=4):
        self.spec = PolicySpec(chunk_size=chunk_size)
        self.calls = 0

    def reset(self):
        self.calls = 0

    def act(self, obs, instruction):
        chunk = np.zeros((self.spec.chunk_size, 7))
        chunk[:, 0] = 100 * self.calls + np.arange(self.spec.chunk_size)
        self.calls += 1
        return chunk


@pytest.fixture
def counting_policy():
    return CountingPolicy()
