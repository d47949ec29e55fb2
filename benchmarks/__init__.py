"""Benchmarks, probes and demos, kept apart from the library packages (see benchmarks/README.md).

Run by `perception bench <target>` (benchmarks/cli.py, plugged into the `perception` CLI through the
`perception.commands` entry point) and `make bench`. Benchmarks import bus, perception and skills;
nothing in those packages imports benchmarks.
"""
