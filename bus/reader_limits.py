"""What a reader of an untrusted file or reference may allocate: one place for every such limit.

Recordings, shards, watch and persist files and shared-memory references are data that another person (or
process) wrote. What they *declare* (a chunk's uncompressed size, a tar member's size, a ring's slot count)
never sizes an allocation: each reader checks the declared number against the limit here first, and stops
reading at the limit when the declaration lies. docs/reliability.md "Untrusted files: limits" lists them.
"""

from __future__ import annotations

MiB = 1 << 20

# -- MCAP recordings (bus/mcapfile.py) ---------------------------------------------------------------------
# A chunk holds whole messages: our recorder closes chunks at 1 MiB, so a chunk is at most 1 MiB plus one
# message (bus.max_msg_size, 64 MiB by default). 256 MiB leaves room for a 4x larger max_msg_size.
MCAP_MAX_CHUNK_BYTES = 256 * MiB  # a chunk's records, uncompressed (zstd, lz4 or none)
MCAP_MAX_RECORD_BYTES = MCAP_MAX_CHUNK_BYTES + MiB  # any one record as stored (a chunk: its compressed bytes)
MCAP_MAX_CHUNK_RECORDS = 1 << 18  # records in one chunk (a 1 MiB chunk of the smallest messages holds ~30 000)
# Chunks whose time ranges overlap are all held at once to merge them in log-time order: their messages'
# bytes together stay under this (a recorder writes chunks in time order; overlap is a clock jump, not GiBs).
MCAP_MAX_PENDING_BYTES = 512 * MiB

# -- shared-memory references (bus/shm.py, receiving side) -------------------------------------------------
SHM_MAX_SLOTS = 1024  # bus.shm.slots is at most 1024 (bus/config.py)
SHM_MAX_SLOT_BYTES = 1 << 30  # one slot's stride: a frame's arrays plus its 4 KiB of header and references
SHM_MAX_SEGMENT_BYTES = 8 << 30  # a whole ring: header + slots x stride (address space, not memory)

# -- tar shards (perception/data/shards.py) ----------------------------------------------------------------
SHARD_MAX_MEMBER_BYTES = 256 * MiB  # one video clip's bytes (a sparse member: its expanded size)
SHARD_MAX_JSON_BYTES = 1 * MiB  # one sample's manifest line
SHARD_MAX_MEMBERS_PER_SAMPLE = 16  # members sharing one key (a sample is a video and its .json)

# -- the world's files (perception/nodes/watches.py, world_store.py) ---------------------------------------
WATCH_FILE_MAX_BYTES = 1 * MiB  # the runtime watch file (a few hundred watches of a few hundred bytes)
PERSIST_LINE_MAX_BYTES = 4 * MiB  # one line of the persist file (a D=1536 segment line is ~40 KB)
