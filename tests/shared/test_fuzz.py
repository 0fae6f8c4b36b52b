"""Fuzzing ``decode``: over 100,000 random and mutated frames, only DecodeError may come out.

Seeded, so a failure reproduces; the failing input is printed in the assertion message.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable

import msgpack
import zstandard

from shared.codec import MAGIC, decode, encode
from shared.compression import Compressor
from shared.errors import DecodeError
from shared.messages import Envelope, MessageType
from tests.shared.golden import SAMPLES

FRAMES = 100_000


def _random_value(rng: random.Random, depth: int = 0) -> object:
    kind = rng.randrange(12 if depth < 3 else 9)
    if kind == 0:
        return rng.randrange(-(2**63), 2**64)
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
    return MAGIC + bytes([1, int(mtype), flags]) + body


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
            + bytes([1, rng.randrange(1, 10), rng.choice([0, 1])])
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
            decoded += 1
    assert decoded + rejected == FRAMES
    assert rejected > FRAMES // 2  # most garbage must be rejected...
    assert decoded > 100  # ...and mutations that keep a valid frame still decode
