"""The whole service against the bare model loop (`perception bench pipeline`)."""
