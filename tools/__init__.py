"""Build and CI helpers (not shipped with the service)."""
