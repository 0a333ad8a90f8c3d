"""Reproducible benchmarks: the service and the simulator as separate processes on loopback."""
