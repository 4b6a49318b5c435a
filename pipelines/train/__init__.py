"""The Ray Train side: the worker loop, checkpoints, the trainer, the cluster checks."""
