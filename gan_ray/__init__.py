"""gan_ray: train GANs at scale and find the hyperparameters that make them work.

Public API: :func:`train`, :func:`load_config`; the submodules ``losses``, ``noise``, ``metrics``.
Heavy layers (Ray, MLflow) are imported only when their functions are called.
"""

from gan_ray.config import GanConfig, load_config

__version__ = "0.1.0"
__all__ = ["GanConfig", "load_config", "train"]


def train(config, **kwargs):
    """Train one GAN; see :func:`gan_ray.api.train`."""
    from gan_ray.api import train as _train

    return _train(config, **kwargs)
