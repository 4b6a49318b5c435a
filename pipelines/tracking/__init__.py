"""MLflow tracking: runs and metrics, curves, progress lines, the method comparison."""
