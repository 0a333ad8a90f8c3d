"""Servers, proxies and checkers the tests share."""
