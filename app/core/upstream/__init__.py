"""The Autoenhance client: API calls, the image byte path, capped JSON bodies, the breaker."""
