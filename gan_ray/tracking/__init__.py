"""The MLflow floor: store access, the one run lifecycle, sweeps as parent runs, logged generators and
the registry. It knows nothing of Ray; :mod:`gan_ray.api` wires it to the training and Ray floors."""
