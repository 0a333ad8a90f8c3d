"""What operators see: structured logs, Prometheus metrics, traces."""
