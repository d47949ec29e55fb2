"""Recorded sessions as tests: run a recording's frames through a pipeline offline (`offline.py`), read
what a session perceived from an MCAP file (`perceived.py`), compare two of those (`diff.py`) and report it
(`report.py`). `perception test` (perception/commands/test.py) is the command; docs/testing.md the guide."""
