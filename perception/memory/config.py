"""`pipeline.world.memory`: retention tiers, the disk budget and the writer's bounds (the store's URL is
`pipeline.world.store`)."""

from __future__ import annotations

from pydantic import Field, model_validator

from perception.nodes.sections import Section


class WindowTier(Section):
    """Window embeddings older than `after_s` are thinned to one per `every_s` (per robot and camera)."""

    after_s: float = Field(gt=0)
    every_s: float = Field(gt=0)


class MemoryConfig(Section):
    # every window for an hour, one a second for a day; after `windows_max_age_s` only the segments' means
    # (one embedding a segment) remain
    window_tiers: list[WindowTier] = Field(
        default_factory=lambda: [WindowTier(after_s=3600, every_s=1.0), WindowTier(after_s=86400, every_s=10.0)]
    )
    windows_max_age_s: float = Field(7 * 86400, gt=0)
    max_age_s: float = Field(90 * 86400, gt=0)  # segments, captions, watch crossings
    # the oldest rows go first once the store holds more than this (SQLite: its live pages; PostgreSQL:
    # live bytes of its tables and indexes, pgstattuple); None: by age only
    max_bytes: int | None = Field(None, ge=1 << 20)
    retain_every_s: float = Field(60.0, gt=0)  # how often the background retention runs
    store_windows: bool = True  # window embeddings (the tiers above); False: segments, captions, watches only
    batch_max: int = Field(500, ge=1)  # rows per transaction
    flush_s: float = Field(0.2, gt=0)  # the writer commits at least this often while rows wait
    # rows held while the database is unreachable; beyond it the oldest windows, then the oldest rows, are
    # dropped and counted (memory.dropped on stats/world)
    buffer_max: int = Field(100_000, ge=100)
    retry_s: float = Field(2.0, gt=0)  # between attempts to reach a database that is down
    pose_max_gap_s: float = Field(2.0, gt=0)  # a pose further than this from a segment's time is not joined
    # credentials for a postgresql:// store: a 0600 file holding the password (else $PGPASSWORD, ~/.pgpass)
    password_file: str | None = None

    @model_validator(mode="after")
    def _tiers_ordered(self) -> MemoryConfig:
        after = [t.after_s for t in self.window_tiers]
        if after != sorted(after) or len(set(after)) != len(after):
            raise ValueError(f"window_tiers must be in increasing after_s, got {after}")
        if any(t.after_s >= self.windows_max_age_s for t in self.window_tiers):
            raise ValueError("every window tier must start before windows_max_age_s")
        return self
