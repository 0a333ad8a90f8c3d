"""The service's version, in a module of its own so any layer can read it without importing the package
root (whose lazy `app.app` would, to an import checker, look like an import of the whole server)."""

__version__ = "2.0.0"
