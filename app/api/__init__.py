"""The HTTP surface: shared dependencies, routes, responses, security, rate limit and the web page."""
