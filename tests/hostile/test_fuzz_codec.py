"""The codec against hostile input, in process, and the seed corpus of past defects as named cases.

Properties (hypothesis, tests/hostile/strategies.py):
- whatever the parts, `decode` and `peek` return or raise `DecodeError` with a known reason, nothing else;
- what `decode` accepts, `encode` can put back on the wire (a recorder or bridge can republish it), and
  `peek` agrees with it on the header;
- every valid message round-trips byte for byte.
Seed corpus: each defect once through the codec (the reason it must get) and once through a real proxy
to a live subscriber, between two valid messages that must both arrive.
"""

from __future__ import annotations

import typing

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from benchmarks.bus.messages import Text
from bus.codec import DecodeError, Reason, decode, encode, peek
from bus.config import BusConfig
from bus.proxy import proxy_in_background
from bus.pubsub import Publisher, Subscriber
from tests.hostile import strategies as S

REASONS = set(typing.get_args(Reason))
CONFIG = BusConfig(max_msg_size=8 * S.MiB)  # the campaign's limits: a 5 MiB topic or src fits in a message
LIMITS = CONFIG.limits()
SMALL_LIMITS = BusConfig(max_msg_size=64 * 1024).limits()  # so that generated messages also hit `oversize`

FUZZ = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
        HealthCheck.filter_too_much,
    ],
)


def outcome(fn, parts, limits):
    """The value, or the DecodeError's reason; anything else fails the test with the input's summary."""
    try:
        return fn(parts, limits=limits)
    except DecodeError as exc:
        assert exc.reason in REASONS, exc.reason
        return exc.reason
    except BaseException as exc:  # the property under test: nothing else may escape
        sizes = [len(p) for p in parts][:8]
        raise AssertionError(
            f"{fn.__name__} raised {type(exc).__name__}: {exc!r} on {len(parts)} parts "
            f"{sizes}, header {bytes(parts[1][:80]) if len(parts) > 1 else None!r}"
        ) from exc


def wire_bytes(parts) -> list[bytes]:
    return [bytes(p) for p in parts]


@FUZZ
@given(S.hostile_messages("fuzz/", max_len=64 * 1024))
def test_decode_and_peek_raise_only_decode_error(h: S.Hostile):
    for limits in (LIMITS, SMALL_LIMITS):
        env = outcome(decode, h.parts, limits)
        head = outcome(peek, h.parts, limits)
        if isinstance(env, str):
            continue
        # accepted: peek agrees, and the message can be put back on the wire as it came
        assert not isinstance(head, str), f"decode accepted what peek refused ({head})"
        assert (head.topic, head.type, head.v, head.seq, head.src, head.t) == (
            env.topic,
            env.type,
            env.v,
            env.seq,
            env.src,
            env.t,
        )
        again = encode(env.topic, env.msg, seq=env.seq, src=env.src, t_ns=env.t)
        env2 = decode(again, limits=limits)
        assert wire_bytes(encode(env2.topic, env2.msg, seq=env2.seq, src=env2.src, t_ns=env2.t)) == wire_bytes(again)


@FUZZ
@given(S.topics("fuzz/"), S.valid_messages, st.integers(0, 2**64 - 1), st.text(max_size=40), st.integers(0, 2**63 - 1))
def test_valid_messages_round_trip(topic, msg, seq, src, t):
    parts = encode(topic, msg, seq=seq, src=src, t_ns=t)
    env = decode(parts, limits=LIMITS)
    assert (env.topic, env.type, env.seq, env.src, env.t) == (topic, msg.TYPE, seq, src, t)
    for name in type(msg).ARRAY_FIELDS:
        sent, got = getattr(msg, name), getattr(env.msg, name)
        if sent is None:
            assert got is None
        else:
            assert got.shape == sent.shape and got.dtype == sent.dtype.newbyteorder("<")
            np.testing.assert_array_equal(got, sent)
    assert wire_bytes(encode(topic, env.msg, seq=seq, src=src, t_ns=t)) == wire_bytes(parts)


@FUZZ
@given(S.wires("fuzz/"))
def test_wire_rebuild_is_faithful(w: S.Wire):
    """The raw-msgpack rebuild the mutations start from decodes exactly like the codec's own encoding."""
    env = decode(w.parts(), limits=LIMITS)
    assert env.type == w.type_name


# -- the seed corpus --------------------------------------------------------------------------------------

SEEDS = {s.name: s for s in S.seed_corpus(CONFIG)}


@pytest.mark.parametrize("name", list(SEEDS))
def test_seed_through_codec(name):
    seed = SEEDS[name]
    for parts in seed.messages():
        got = outcome(decode, parts, LIMITS)
        assert (got if isinstance(got, str) else "valid") == seed.expect
        outcome(peek, parts, LIMITS)  # a reason or a header; never anything else


async def _valid_pair_around(pub: Publisher, sub: Subscriber, messages: list[list[bytes]], tag: str) -> None:
    pub.publish_nowait("fuzz/valid", Text(text=f"{tag}-before"))
    for parts in messages:
        pub.publish_raw(parts)
    pub.publish_nowait("fuzz/valid", Text(text=f"{tag}-after"))
    got = []
    async with _timeout(30):
        while len(got) < 2:
            env = await sub.recv()
            if env.topic == "fuzz/valid":
                got.append(env.msg.text)
    assert got == [f"{tag}-before", f"{tag}-after"]


def _timeout(s: float):
    import asyncio

    return asyncio.timeout(s)


@pytest.mark.parametrize("name", list(SEEDS))
async def test_seed_through_proxy_to_a_live_subscriber(runtime_dir, name):
    """Each defect sent for real: the valid messages around it arrive, and it is counted where expected."""
    seed = SEEDS[name]
    config = CONFIG.model_copy(update={"runtime_dir": runtime_dir, "stats_interval_s": 0.1})
    async with (
        proxy_in_background(config) as proxy,
        Subscriber(config, ["fuzz/"]) as sub,
        Publisher(config, src="seed-test") as pub,
    ):
        await _valid_pair_around(pub, sub, seed.messages(), name)
        if seed.expect == "valid":
            assert not sub.stats.bad
            assert sub.stats.received == 2 + len(seed.messages())
        elif seed.proxy_drops:
            assert not sub.stats.bad
            drops = proxy._forwarder.counters
            assert sum(v for k, v in drops.items() if k.startswith("dropped_")) == 1, dict(drops)
        else:
            assert dict(sub.stats.bad) == {seed.expect: 1}
        # and the subscriber keeps going: a third valid message after the check
        await _valid_pair_around(pub, sub, [[b"fuzz/x", b"\xc1"]], name + "-again")


async def test_seed_100k_random_src_names_keep_subscriber_memory_bounded(runtime_dir):
    """100 000 valid messages, each from a new `src`: all delivered, per-stream state within max_streams."""
    config = CONFIG.model_copy(update={"runtime_dir": runtime_dir, "max_streams": 1024})
    n = 100_000
    msgs = S.random_src_wires(n)
    async with proxy_in_background(config), Subscriber(config, ["fuzz/"]) as sub, Publisher(config, src="srcs") as pub:
        got = 0
        async with _timeout(120):
            for start in range(0, n, 2000):  # in chunks: well inside every HWM on the way
                for parts in msgs[start : start + 2000]:
                    pub.publish_raw(parts)
                while got < min(n, start + 2000):
                    if sub.recv_nowait() is None:
                        await sub.recv()
                    got += 1
                assert len(sub._last_seq) <= config.max_streams
    assert got == n and not sub.stats.bad and sub.stats.gaps == 0
    assert len(sub._last_seq) <= config.max_streams


async def test_seed_corpus_through_a_recorder(runtime_dir, tmp_path):
    """Every seed case through a real proxy to a Recorder, between numbered valid messages: the recorder
    keeps recording, every valid message is in the file, and so is every seed case with a valid header."""
    import asyncio

    from bus.mcapfile import iter_messages
    from bus.record import Recorder

    config = CONFIG.model_copy(update={"runtime_dir": runtime_dir})
    out = tmp_path / "seeds.mcap"
    async with proxy_in_background(config):
        recorder = Recorder(config, out, topics=["fuzz/"])
        task = asyncio.create_task(recorder.run())
        await asyncio.wait_for(recorder.ready.wait(), 30)
        async with Publisher(config, src="seed-test") as pub:
            n = 0
            for seed in SEEDS.values():
                pub.publish_nowait("fuzz/valid", Text(text=str(n)))
                n += 1
                for parts in seed.messages():
                    pub.publish_raw(parts)
            pub.publish_nowait("fuzz/valid", Text(text=str(n)))
            n += 1
            await asyncio.sleep(1.5)  # the recorder has it all well within this on loopback
        assert not task.done(), f"the recorder stopped: {task.exception() if not task.cancelled() else 'cancelled'}"
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    got = [decode(m.parts(), limits=LIMITS).msg.text for m in iter_messages(out, topics=["fuzz/valid"])]
    assert got == [str(i) for i in range(n)]
    edge = sum(1 for s in SEEDS.values() if s.expect == "valid" for _ in s.messages())
    assert sum(1 for _ in iter_messages(out, topics=["fuzz/seed"])) >= edge
