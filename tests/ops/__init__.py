"""Logs, metrics, traces, Sentry."""
