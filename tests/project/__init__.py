"""The repository itself: its docs, its dependencies."""
