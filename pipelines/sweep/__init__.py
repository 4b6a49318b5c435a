"""Ray Tune sweeps: spaces validated against the config, and the driver."""
