"""One Compressor used from several threads at once (the edge's pipeline thread and its uplink
both frame messages; the cloud decodes on the loop and in workers): every body round-trips.

zstandard's compression and decompression contexts are not thread-safe; shared, they wrote
corrupt bundles under load (`semcom bench load`: "corrupt zstd body: Data corruption detected").
"""

from __future__ import annotations

import random
import threading

from shared.compression import Compressor


def _body(rng: random.Random) -> bytes:
    words = [b"car", b"truck", b"bus", b"person", b"edge-01", b"\x00\x01\x02"]
    return b"".join(rng.choice(words) for _ in range(rng.randint(20, 4000)))


def test_one_compressor_shared_by_threads_round_trips_every_body() -> None:
    compressor = Compressor()
    failures: list[str] = []
    start = threading.Barrier(4)

    def work(seed: int) -> None:
        rng = random.Random(seed)
        start.wait()
        for _ in range(400):
            body = _body(rng)
            packed = compressor.compress(body)
            if packed is None:
                continue
            try:
                if compressor.decompress(packed) != body:
                    failures.append("a body came back different")
            except Exception as exc:  # the bug: DecodeError on a frame we just made
                failures.append(f"{type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=work, args=(seed,)) for seed in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []
