"""The Autoenhance simulator and the official SDK against it."""
