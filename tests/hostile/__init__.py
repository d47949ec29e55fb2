"""Hostile input: structure-aware fuzzing of the bus codec, the proxy, subscribers, the recorder and RPC.

- strategies.py: hypothesis strategies that build labelled hostile multiparts and RPC requests, and the
  seed corpus of known defects (regression cases).
- test_fuzz_codec.py: in-process properties of bus.codec (decode / peek never raise anything but
  DecodeError; valid messages round-trip) and the seed corpus as named cases.
- campaign.py: `python -m tests.hostile.campaign --duration S` fuzzes a live system (proxy, subscriber,
  recorder, world and encoder nodes as real processes); `make hostile` runs it for 10 minutes.
- test_campaign_short.py: the same campaign for ~25 s, in `make test`.
"""
