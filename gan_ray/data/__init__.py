"""Training data: the dataset catalog, 2-D Gaussian mixtures, image sets, and device-resident sources.

Import the submodules you need (``gan_ray.data.images`` pulls in torchvision); this package itself
only re-exports the catalog, so reading dataset facts stays cheap.
"""

from gan_ray.data.catalog import (
    DATASETS,
    IMAGE_DATASETS,
    MIXTURE_DATASETS,
    TORCHVISION_DATASETS,
    DatasetInfo,
    dataset_info,
    frechet_metric,
)

__all__ = [
    "DATASETS",
    "IMAGE_DATASETS",
    "MIXTURE_DATASETS",
    "TORCHVISION_DATASETS",
    "DatasetInfo",
    "dataset_info",
    "frechet_metric",
]
