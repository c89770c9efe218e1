"""Real LIBERO episodes through `evalkit serve` + `--policy remote` equal the in-process ones.

The oracle is the served policy: it is stateful (one instance per connection on the server)
and reads simulator ground truth shipped over the wire, and its success step depends on
every action, so any difference in observations or actions would show in the outcomes.
"""

import pytest

from evalkit.run.driver import RunConfig, execute
from tests.test_serve import outcomes, start_server

pytestmark = pytest.mark.libero


def test_libero_episodes_through_the_server_equal_in_process(tmp_path):
    proc, url = start_server("--policy", "oracle")
    base = {"suites": ["libero_spatial"], "tasks": [0], "episodes_per_task": 1}
    try:
        remote = execute(RunConfig.from_dict({**base, "policy": "remote", "policy_args": {"url": url},
                                              "out": str(tmp_path / "remote")}), progress=False)
    finally:
        proc.kill()
        proc.wait()
    local = execute(RunConfig.from_dict({**base, "policy": "oracle", "out": str(tmp_path / "local")}), progress=False)
    assert outcomes(remote) == outcomes(local)
    assert outcomes(local)[0][1] is True  # the oracle solves it: the comparison covers a whole episode
