"""One local Ray cluster (2 CPUs) for the Ray runner's tests, started by the first test that needs it and left to
Ray's own exit handler, so that the modules share it instead of each paying the start."""

import pytest


@pytest.fixture(scope="session")
def ray_cluster():
    ray = pytest.importorskip("ray", reason="the Ray runner needs the [ray] extra (pip install 'mmalign[ray]')")
    if not ray.is_initialized():
        # A worker's first decode imports the audio stack: on a loaded 2-core machine that alone once passed the
        # 30 s decode limit, and a timeout there is not what these tests compare (outcomes, not timing).
        env = {"env_vars": {"MMALIGN_DECODE_TIMEOUT_S": "300"}}
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False, runtime_env=env)
    return ray.get_runtime_context().gcs_address
