"""The training core, plain PyTorch: one step, the loop, checkpoints, the CUDA-graph fast path, the
observer protocol, and a single-process runner. Nothing here imports Ray, MLflow or Optuna."""
