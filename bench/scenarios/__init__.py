"""The benchmark scenarios; each takes the run's context and returns its results."""
