"""Model latency per window (`perception bench model`) and the prepared GPU check."""
