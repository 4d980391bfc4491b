"""The Ray floor: the cluster, Ray Train (DDP workers) and Ray Tune + Optuna (sweeps). It knows nothing
of MLflow: whoever records runs talks to it through :mod:`gan_ray.training.observers`."""
