"""The engine and what it stands on: no web framework here (upstream client, plan, fetch, archive)."""
