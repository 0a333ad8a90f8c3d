"""Storage adapters (SQLite files, the S3 bucket): plain values in, nothing of the settings."""
