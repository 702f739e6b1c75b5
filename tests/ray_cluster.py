"""One local Ray cluster (2 CPUs) for the Ray runner's tests, started by the first test that needs it and left to
Ray's own exit handler, so that the modules share it instead of each paying the start."""

import pytest


@pytest.fixture(scope="session")
def ray_cluster():
    ray = pytest.importorskip("ray", reason="the Ray runner needs the [ray] extra (pip install 'mmalign[ray]')")
    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    return ray.get_runtime_context().gcs_address
