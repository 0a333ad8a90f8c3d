"""The archive policy: resume and single-flight."""
