import os

import pytest


@pytest.fixture(scope="session")
def ray_cluster():
    """A real single-node Ray cluster on loopback (Ray has no local_mode any more), shared by the tests."""
    ray = pytest.importorskip("ray")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray.init(
        address="local",
        num_cpus=2,
        num_gpus=0,
        include_dashboard=False,
        _node_ip_address="127.0.0.1",
        object_store_memory=100 * 1024**2,
        log_to_driver=False,
        ignore_reinit_error=True,
    )
    yield ray
    ray.shutdown()


@pytest.fixture()
def prompts():
    from workbench.analyses.demo import sample_text

    return [p.strip() for p in sample_text().split("\n\n") if p.strip()]
