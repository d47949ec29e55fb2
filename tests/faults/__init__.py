"""Fault scenarios against a live pipeline: every process killed (SIGKILL) or wedged (SIGSTOP), a slow
subscriber, the recorder on a full or read-only disk. `make faults` runs the long campaign
(tests/faults/campaign.py); the short versions run in `make test`."""
