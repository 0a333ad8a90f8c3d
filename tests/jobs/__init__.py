"""Background jobs and their stores."""
