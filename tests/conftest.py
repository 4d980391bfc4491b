"""Shared fixtures. ``ray_session`` starts one real local Ray for every test that needs it."""

from __future__ import annotations

import os
import tempfile

import pytest

# Feature-extractor caches of this session stay out of the user's ~/.cache (set before any Ray
# worker starts, so workers inherit it).
os.environ.setdefault("GAN_RAY_CACHE", tempfile.mkdtemp(prefix="gan_ray_cache_"))


@pytest.fixture(scope="session")
def ray_session(tmp_path_factory):
    """A real local Ray on 2 CPUs with the ``train_driver`` resource sweeps schedule trial drivers on.

    The dashboard stays on: Ray Train's placement-group cleaner needs its state API to release the
    workers of trials that Tune stops early.
    """
    import ray

    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    if not ray.is_initialized():
        ray.init(num_cpus=2, resources={"train_driver": 100}, log_to_driver=False)
    yield ray
    ray.shutdown()
