"""The installed package's version, as both MCP servers (pipeline and store) announce it."""

from __future__ import annotations


def package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("vljepa-perception")
    except PackageNotFoundError:
        return "0"
