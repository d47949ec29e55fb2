"""Token buckets per RPC client, so that one client flooding writes slows only itself.

Each client (its CURVE key name, else its connection: `bus.rpc.current_client`) has a bucket of `burst`
calls that refills at `rate` calls a second; a call finding it empty is refused with how long to wait.
Clients are names that peers choose (a new connection is a new client), so the table of buckets is a
`BoundedDict`: the least recently heard fall out (counted in `evicted`) and come back with a full bucket.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass

from bus.bounded import BoundedDict


@dataclass
class _Bucket:
    tokens: float
    at: float  # clock time of `tokens`


class RateLimiter:
    def __init__(self, rate: float, burst: int, max_clients: int, clock: Callable[[], float] = time.monotonic) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError(f"rate must be > 0 and burst >= 1, got {rate}, {burst}")
        self.rate, self.burst, self.clock = rate, burst, clock
        self._buckets: BoundedDict[Hashable, _Bucket] = BoundedDict(max_clients)
        self.limited = 0  # calls refused

    def take(self, client: Hashable) -> float:
        """Spend one call of `client`'s: 0.0 if it may go ahead, else the seconds until it may."""
        now = self.clock()
        b = self._buckets.get(client)
        if b is None:
            b = self._buckets[client] = _Bucket(float(self.burst), now)
        else:
            b.tokens = min(float(self.burst), b.tokens + (now - b.at) * self.rate)
            b.at = now
        if b.tokens >= 1.0:
            b.tokens -= 1.0
            return 0.0
        self.limited += 1
        return (1.0 - b.tokens) / self.rate

    @property
    def clients(self) -> int:
        return len(self._buckets)

    @property
    def evicted(self) -> int:
        return self._buckets.evicted
