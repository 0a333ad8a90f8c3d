"""Signed callbacks, the outbox, watches."""
