"""Fuzzing ``decode`` and the bundle decoder: over 100,000 random and mutated frames each,
only DecodeError may come out.

Seeded, so a failure reproduces; the failing input is printed in the assertion message.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable

import msgpack
import pytest
import zstandard
from hypothesis import given
from hypothesis import strategies as st

from shared import limits
from shared.bundle import BUNDLE_TYPE, decode_frame, encode_bundle, is_bundle
from shared.codec import MAGIC, PREFIX_BYTES, decode, encode
from shared.compression import Compressor
from shared.errors import DecodeError
from shared.messages import MESSAGE_TYPES, Envelope, MessageType
from shared.schema import Numbers, UInt, wire_fields
from tests.shared.golden import SAMPLES, bundle_fixture

FRAMES = 100_000


def _random_value(rng: random.Random, depth: int = 0) -> object:
    kind = rng.randrange(12 if depth < 3 else 9)
    if kind == 0:  # anywhere in msgpack's range, often at the storage bound (2**63 - 1)
        return rng.choice([rng.randrange(-(2**63), 2**64), 2**63 - 1, 2**63, 2**64 - 1])
    if kind == 1:
        return rng.randrange(-3, 300)
    if kind == 2:
        return rng.choice([math.nan, math.inf, -math.inf, 0.5, -1.0, 1e39, rng.random()])
    if kind == 3:
        return "".join(chr(rng.randrange(32, 0x2FFF)) for _ in range(rng.randrange(12)))
    if kind == 4:
        return rng.randbytes(rng.choice([0, 4, 8, 9, 16, 32, rng.randrange(80)]))
    if kind == 5:
        return rng.choice([True, False, None])
    if kind in (6, 7, 8):
        return rng.choice(["edge-01", "cam-01", "", "x" * 70])
    if kind in (9, 10):
        return [_random_value(rng, depth + 1) for _ in range(rng.randrange(10))]
    return {_random_value(rng, 3): _random_value(rng, depth + 1) for _ in range(rng.randrange(4))}


def _structured(rng: random.Random) -> bytes:
    """A valid prefix and a msgpack body with plausible-but-wrong fields."""
    mtype = rng.choice(list(MessageType))
    valid = encode(rng.choice(list(SAMPLES.values())), Compressor(min_bytes=1 << 30))
    items = msgpack.unpackb(valid[5:], strict_map_key=False)
    if rng.random() < 0.7:
        for _ in range(rng.randrange(1, 3)):
            items[rng.randrange(len(items))] = _random_value(rng)
    else:
        items = [_random_value(rng) for _ in range(rng.randrange(12))]
    body = msgpack.packb(items, use_bin_type=True)
    flags = 0
    if rng.random() < 0.1:
        body, flags = zstandard.ZstdCompressor().compress(body), 1
    return MAGIC + bytes([limits.PROTOCOL_VERSION, int(mtype), flags]) + body


def _mutate(rng: random.Random, frame: bytes) -> bytes:
    data = bytearray(frame)
    for _ in range(rng.randrange(1, 4)):
        op = rng.randrange(6)
        pos = rng.randrange(len(data)) if data else 0
        if op == 0 and data:
            data[pos] ^= 1 << rng.randrange(8)
        elif op == 1 and data:
            data[pos] = rng.randrange(256)
        elif op == 2:
            del data[pos:]
        elif op == 3:
            data[pos:pos] = rng.randbytes(rng.randrange(1, 16))
        elif op == 4 and data:
            del data[pos : pos + rng.randrange(1, 8)]
        else:
            other = encode(rng.choice(list(SAMPLES.values())))
            cut = rng.randrange(len(other))
            data = data[:pos] + bytearray(other[cut:])
    return bytes(data)


def test_decode_only_raises_decode_error() -> None:
    rng = random.Random(20251124)
    corpus = [encode(env) for env in SAMPLES.values()]
    corpus += [encode(env, Compressor(min_bytes=0)) for env in SAMPLES.values()]
    makers: list[Callable[[], bytes]] = [
        lambda: rng.randbytes(rng.randrange(64)),
        lambda: (
            MAGIC
            + bytes([limits.PROTOCOL_VERSION, rng.randrange(1, 10), rng.choice([0, 1])])
            + rng.randbytes(rng.randrange(64))
        ),
        lambda: _mutate(rng, rng.choice(corpus)),
        lambda: _mutate(rng, rng.choice(corpus)),
        lambda: _mutate(rng, rng.choice(corpus)),
        lambda: _structured(rng),
        lambda: _structured(rng),
    ]
    decoded = rejected = 0
    for i in range(FRAMES):
        frame = makers[i % len(makers)]()
        try:
            env = decode(frame)
        except DecodeError:
            rejected += 1
        except Exception as exc:  # pragma: no cover - the assertion is the point
            raise AssertionError(f"decode({frame!r}) raised {type(exc).__name__}: {exc}") from exc
        else:
            assert isinstance(env, Envelope)
            assert max(env.seq, env.capture_ts_us, env.send_ts_us) <= limits.MAX_SEQ
            decoded += 1
    assert decoded + rejected == FRAMES
    assert rejected > FRAMES // 2  # most garbage must be rejected...
    assert decoded > 100  # ...and mutations that keep a valid frame still decode


_RAW = Compressor(min_bytes=1 << 30)
_HEADER = {1: "Envelope.seq", 2: "Envelope.capture_ts_us", 3: "Envelope.send_ts_us"}


def _storage_bounded() -> list[tuple[str, int, str]]:
    """(sample, body position, field) of every seq and timestamp in the golden samples: the
    u64 values msgpack carries that storage (signed 64-bit) must be protected from."""
    out = [(name, pos, field) for name in SAMPLES for pos, field in _HEADER.items()]
    for name, env in SAMPLES.items():
        cls = MESSAGE_TYPES[env.type]
        for i, f in enumerate(wire_fields(cls), start=4):
            kind = f.metadata["wire"]
            item = kind.item if isinstance(kind, Numbers) else kind
            if isinstance(item, UInt) and item.bits == 64:
                out.append((name, i, f"{cls.__name__}.{f.name}"))
    return out


_BOUNDED = _storage_bounded()


def test_every_u64_field_is_bounded_by_storage() -> None:
    fields = {field for _, _, field in _BOUNDED}
    assert {"Envelope.seq", "HelloAck.last_seq", "Ack.seq", "Ack.ranges", "Error.ref_seq"} <= fields
    assert {"TrackEnd.first_seen_us", "TrackEnd.last_seen_us"} <= fields
    for cls in (Envelope, *MESSAGE_TYPES.values()):  # nothing beyond what storage holds
        for f in wire_fields(cls):
            kind = f.metadata["wire"]
            item = kind.item if isinstance(kind, Numbers) else kind
            assert not isinstance(item, UInt) or item.high <= limits.MAX_SEQ, f.name


@given(
    target=st.sampled_from(_BOUNDED),
    value=st.integers(limits.MAX_SEQ + 1, 2**64 - 1),
    compress=st.booleans(),
)
def test_out_of_range_integers_are_refused_naming_the_field(
    target: tuple[str, int, str], value: int, compress: bool
) -> None:
    """Any seq or timestamp above 2**63 - 1 (legal u64 msgpack, more than SQL's BIGINT holds)
    is a DecodeError that names the field, never a message the cloud then fails to store."""
    name, pos, field = target
    frame = encode(SAMPLES[name], _RAW)
    items = msgpack.unpackb(frame[PREFIX_BYTES:], strict_map_key=False)
    if pos == 3:
        items[3] = value - items[2]  # the header carries send_ts as a delta from capture_ts
    elif isinstance(items[pos], bytes):  # Ack.ranges: one bin of u64
        items[pos] = (0).to_bytes(8, "little") + value.to_bytes(8, "little")
    else:
        items[pos] = value
    body = msgpack.packb(items, use_bin_type=True)
    prefix = bytearray(frame[:PREFIX_BYTES])
    if compress:
        body = zstandard.ZstdCompressor().compress(body)
        prefix[4] = 1
    with pytest.raises(DecodeError) as info:
        decode(bytes(prefix) + body)
    assert info.value.field is not None
    assert info.value.field.startswith(field), (info.value.field, field)
    assert str(value) in info.value.reason


def _bundle_corpus(rng: random.Random) -> list[bytes]:
    """Valid bundles: the golden one (raw and compressed) and random mixes of the samples."""
    data = [env for env in SAMPLES.values() if env.seq > 0]
    corpus = [bundle_fixture(), bundle_fixture(Compressor(min_bytes=0))]
    for _ in range(30):
        picked = rng.sample(data, rng.randrange(1, len(data) + 1))
        base = rng.choice([1, limits.MAX_SEQ - 10, rng.randrange(1, 2**40)])
        envelopes = [
            Envelope(e.edge_id, base + i, e.capture_ts_us, e.send_ts_us, e.message)
            for i, e in enumerate(picked)
        ]
        step = rng.choice([1, 16, 64, 4096])
        comp = Compressor(min_bytes=0) if rng.random() < 0.3 else _RAW
        corpus.append(encode_bundle(envelopes, box_step=step, compressor=comp))
    return corpus


def test_bundle_decode_only_raises_decode_error() -> None:
    """100,000 mutated bundles and random bytes behind a bundle prefix: ``decode_frame`` gives
    envelopes within storage bounds or one DecodeError, never another exception."""
    rng = random.Random(20261204)
    corpus = _bundle_corpus(rng)
    prefix = MAGIC + bytes([limits.PROTOCOL_VERSION, BUNDLE_TYPE])
    makers: list[Callable[[], bytes]] = [
        lambda: prefix + bytes([rng.choice([0, 1])]) + rng.randbytes(rng.randrange(96)),
        lambda: _mutate(rng, rng.choice(corpus)),
        lambda: _mutate(rng, rng.choice(corpus)),
        lambda: _mutate(rng, rng.choice(corpus)),
        lambda: _mutate(rng, rng.choice(corpus)),
    ]
    decoded = rejected = 0
    for i in range(FRAMES):
        frame = makers[i % len(makers)]()
        try:
            envelopes = decode_frame(frame)
        except DecodeError:
            rejected += 1
        except Exception as exc:  # pragma: no cover - the assertion is the point
            raise AssertionError(
                f"decode_frame({frame!r}) raised {type(exc).__name__}: {exc}"
            ) from exc
        else:
            for env in envelopes:
                assert isinstance(env, Envelope)
                assert 1 <= env.seq <= limits.MAX_SEQ or not is_bundle(frame)
                assert max(env.capture_ts_us, env.send_ts_us) <= limits.MAX_TS_US
            decoded += 1
    assert decoded + rejected == FRAMES
    assert rejected > FRAMES // 2
    assert decoded > 100
