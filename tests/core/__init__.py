"""The engine and what it stands on: upstream client, budget, ZIP bytes, naming, spool."""
