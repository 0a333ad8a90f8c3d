"""The HTTP surface: routes, validators, intake, rate limits, server limits."""
