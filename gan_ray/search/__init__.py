"""The search floor: a sweep's search-space file read into a validated space, and what a sweep knows of
its trials. Plain Python over the config: no Ray, MLflow or Optuna (those floors sit above it)."""
