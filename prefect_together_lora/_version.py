"""The package version, importable without loading Prefect."""

__version__ = "0.1.0"
