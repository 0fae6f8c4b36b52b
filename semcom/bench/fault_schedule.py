"""The fault benchmark's schedule: which fault when, drawn from a seed.

Four kinds of fault:

- ``kill_cloud``: SIGKILL ``semcom cloud serve`` and start it again at once;
- ``kill_edge``: SIGKILL ``semcom edge replay`` and start it again at once (same spool);
- ``cloud_down``: stop the cloud (SIGTERM: a planned restart) and keep it down ``duration_s``;
- ``blackhole``: the link drops everything for ``duration_s`` (:mod:`semcom.bench.linkcut`),
  both processes running; some outages are shorter than the edge's heartbeat timeout (10 s:
  the session should survive), some longer (it must reconnect).

Faults come from a shuffled deck (two cloud kills, two edge kills, one cloud-down, one
blackhole per round), so every stretch of six faults has four kills and two outages whatever
the seed; gaps between faults are ``every_s`` times a uniform factor in [0.6, 1.4], counted
from the end of the previous outage. ``random.Random(seed)``: the same seed, seconds and
``every_s`` give the same schedule on every machine.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass
from typing import Final

KILL_CLOUD: Final = "kill_cloud"
KILL_EDGE: Final = "kill_edge"
CLOUD_DOWN: Final = "cloud_down"
BLACKHOLE: Final = "blackhole"
KILLS: Final = (KILL_CLOUD, KILL_EDGE)
OUTAGES: Final = (CLOUD_DOWN, BLACKHOLE)
DECK: Final = (KILL_CLOUD, KILL_EDGE, KILL_CLOUD, KILL_EDGE, CLOUD_DOWN, BLACKHOLE)
#: Outage lengths (s), uniform: blackholes straddle the edge's 10 s heartbeat timeout.
DURATION_S: Final = {CLOUD_DOWN: (2.0, 8.0), BLACKHOLE: (4.0, 16.0)}
#: Mean gap between faults (s): 180 s give about 14 faults (9 kills, 5 outages).
DEFAULT_EVERY_S: Final = 9.0


@dataclass(frozen=True)
class Fault:
    """One fault: at ``at_s`` seconds after the stream starts; ``duration_s`` for outages."""

    at_s: float
    kind: str
    duration_s: float = 0.0

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def make_schedule(
    seconds: float,
    seed: int,
    every_s: float = DEFAULT_EVERY_S,
    first_s: float | None = None,
    quiet_end_s: float | None = None,
) -> list[Fault]:
    """Faults for a stream of ``seconds``: the first at ``first_s`` (default: two thirds of
    ``every_s``, at least 2 s, so that the edge has usually connected), none starting or
    lasting past ``seconds - quiet_end_s`` (default: 2 s before the end)."""
    if seconds <= 0 or every_s <= 0:
        raise ValueError(f"seconds and every_s must be > 0, got {seconds} and {every_s}")
    rng = random.Random(seed)
    first = max(2.0, every_s * 2 / 3) if first_s is None else first_s
    end = seconds - (2.0 if quiet_end_s is None else quiet_end_s)
    deck: list[str] = []
    out: list[Fault] = []
    t = first
    while True:
        if not deck:
            deck = list(DECK)
            rng.shuffle(deck)
        kind = deck.pop(0)
        low, high = DURATION_S.get(kind, (0.0, 0.0))
        duration = round(rng.uniform(low, high), 1) if high else 0.0
        if t + duration > end:
            break
        out.append(Fault(round(t, 1), kind, duration))
        t += duration + every_s * rng.uniform(0.6, 1.4)
    return out


def describe(schedule: list[Fault]) -> str:
    kills = sum(f.kind in KILLS for f in schedule)
    return f"{len(schedule)} faults: {kills} kills, {len(schedule) - kills} outages"
