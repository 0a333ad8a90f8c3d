"""The storage adapters."""
