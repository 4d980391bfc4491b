"""gan_ray: train GANs at scale and find the hyperparameters that make them work.

Public API: :func:`train`, :func:`sweep`, :func:`load_generator`, :func:`load_config`; the
submodules ``losses``, ``noise``, ``metrics``.
Heavy layers (Ray, MLflow) are imported only when their functions are called.
"""

from gan_ray.config import GanConfig, load_config

__version__ = "0.1.0"
__all__ = ["GanConfig", "load_config", "load_generator", "sweep", "train"]


def train(config, **kwargs):
    """Train one GAN; see :func:`gan_ray.api.train`."""
    from gan_ray.api import train as _train

    return _train(config, **kwargs)


def sweep(search_space, **kwargs):
    """Run a hyperparameter sweep and register its best generator; see :func:`gan_ray.tuning.sweep`."""
    from gan_ray.tuning import sweep as _sweep

    return _sweep(search_space, **kwargs)


def load_generator(uri, **kwargs):
    """Load a trained generator to sample from; see :func:`gan_ray.sampling.load_generator`."""
    from gan_ray.sampling import load_generator as _load_generator

    return _load_generator(uri, **kwargs)
