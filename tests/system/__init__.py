"""Whole-service runs: real processes, clusters, browsers, leaks, memory, shutdown."""
