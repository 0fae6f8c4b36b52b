"""Link profiles: the uplink a cell gives its cameras (rate, RTT, jitter, loss), as named
presets with their sources, custom YAML profiles, and bandwidth traces for variable links.

Units: rates in bit/s, times in ms (profiles) or s (traces), loss as a probability per packet.
``rate_bps`` is the uplink capacity the cameras of one cell share together; a camera's own
radio limit is not modelled separately.

The presets are round figures of the order the cited sources report, for comparing payload
strategies, not a measurement of any operator's network; put your own in a YAML file
(``semcom sim run --scenario FILE`` with ``profiles:``, or ``semcom sim profiles --file``).

Bandwidth traces are piecewise constant: ``[[t_s, rate], ...]`` from ``t_s = 0``, repeated
after the last point's time plus ``trace_period_s``; or a file: CSV lines ``t_s,rate_bps``, or
a Mahimahi trace (one integer ms timestamp per line, each a 1,500-byte delivery opportunity,
binned per second).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Final

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from edge.config import Rate
from shared import settings
from sim.errors import ProfileError

NAME_PATTERN: Final = r"^[a-z0-9][a-z0-9_.-]{0,63}$"
MAHIMAHI_PACKET_BYTES: Final = 1_500


class TracePoint(BaseModel):
    """From ``t_s`` on (s since the start, or the start of the repetition), the link gives
    ``rate_bps``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    t_s: float = Field(ge=0, description="Start of this step (s).")
    rate_bps: Rate = Field(description="Uplink rate from t_s on (bit/s, or '2mbit').")


def _point(value: object) -> object:
    if isinstance(value, list | tuple) and len(value) == 2:
        return {"t_s": value[0], "rate_bps": value[1]}
    return value


Point = Annotated[TracePoint, BeforeValidator(_point)]


class LinkProfile(BaseModel):
    """One uplink: what N cameras in a cell share."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=NAME_PATTERN, description="Short id, e.g. 'lte' or 'my-site'.")
    description: str = Field("", description="What link this stands for.")
    rate_bps: Rate = Field(description="Uplink capacity of the cell (bit/s, or '5mbit').")
    rtt_ms: float = Field(ge=0, le=60_000, description="Round-trip time without queueing (ms).")
    jitter_ms: float = Field(
        0.0,
        ge=0,
        le=60_000,
        description="Mean extra one-way delay, exponentially distributed per message (ms).",
    )
    loss: float = Field(
        0.0, ge=0, lt=0.5, description="Packet loss probability (each loss is retransmitted)."
    )
    mtu_bytes: int = Field(1_200, ge=64, le=65_535, description="Packet payload size (bytes).")
    trace: tuple[Point, ...] = Field(
        (), description="Piecewise-constant rate steps [[t_s, rate], ...]; overrides rate_bps."
    )
    trace_period_s: float = Field(
        1.0, gt=0, description="Length of the trace's last step before it repeats (s)."
    )
    source: str = Field("", description="Where the figures come from.")

    @model_validator(mode="after")
    def _check_trace(self) -> LinkProfile:
        if self.trace:
            times = [p.t_s for p in self.trace]
            if times[0] != 0:
                raise ValueError(f"trace must start at t_s = 0, starts at {times[0]}")
            for i in range(1, len(times)):
                if times[i] <= times[i - 1]:
                    raise ValueError(
                        f"trace times must increase: point {i} at {times[i]} s follows "
                        f"{times[i - 1]} s"
                    )
        return self

    def bandwidth(self) -> BandwidthTrace:
        if not self.trace:
            return BandwidthTrace([0.0], [self.rate_bps], math.inf)
        times = [p.t_s for p in self.trace]
        return BandwidthTrace(
            times, [p.rate_bps for p in self.trace], times[-1] + self.trace_period_s
        )

    @property
    def mean_rate_bps(self) -> float:
        return self.bandwidth().mean_bps


class BandwidthTrace:
    """Piecewise-constant rate over time, repeating every ``period_s`` (inf: the last step
    lasts forever)."""

    def __init__(self, times_s: Sequence[float], rates_bps: Sequence[float], period_s: float):
        if not times_s or len(times_s) != len(rates_bps) or times_s[0] != 0:
            raise ProfileError("a bandwidth trace needs steps starting at t = 0, one rate each")
        if any(r <= 0 for r in rates_bps):
            raise ProfileError("every rate of a bandwidth trace must be positive")
        self.times = list(times_s)
        self.rates = list(rates_bps)
        self.period = period_s

    @property
    def mean_bps(self) -> float:
        if math.isinf(self.period):
            return self.rates[-1]
        ends = [*self.times[1:], self.period]
        bits = sum(r * (e - t) for t, e, r in zip(self.times, ends, self.rates, strict=True))
        return bits / self.period

    def _step(self, t: float) -> tuple[float, float]:
        """(rate, seconds until the rate may change) at time ``t``."""
        base = 0.0
        if not math.isinf(self.period):
            base = math.floor(t / self.period) * self.period
        local = t - base
        i = bisect.bisect_right(self.times, local) - 1
        end = self.times[i + 1] if i + 1 < len(self.times) else self.period
        return self.rates[i], max(end - local, 1e-9)

    def rate_at(self, t: float) -> float:
        return self._step(t)[0]

    def transmit_end(self, start: float, bits: float) -> float:
        """When ``bits`` sent from ``start`` have left the link (integrates rate changes)."""
        t = start
        left = bits
        while True:
            rate, span = self._step(t)
            if left <= rate * span:
                return t + left / rate
            left -= rate * span
            t += span


def read_trace_file(path: Path) -> list[list[float]]:
    """``[[t_s, rate_bps], ...]`` from a CSV (``t_s,rate``) or a Mahimahi trace (ms stamps)."""
    try:
        lines = [ln.strip() for ln in path.read_text().splitlines()]
    except OSError as exc:
        raise ProfileError(f"cannot read bandwidth trace {path}: {exc.strerror}") from None
    lines = [ln for ln in lines if ln and not ln.startswith("#")]
    if not lines:
        raise ProfileError(f"bandwidth trace {path} is empty")
    if "," in lines[0] or "," in lines[-1]:
        points: list[list[float]] = []
        for n, line in enumerate(lines, 1):
            parts = line.split(",")
            try:
                points.append([float(parts[0]), float(parts[1])])
            except (ValueError, IndexError):
                if n == 1:
                    continue  # a header line
                raise ProfileError(f"{path}:{n}: expected 't_s,rate_bps', got {line!r}") from None
        return points
    try:
        stamps = [int(ln) for ln in lines]
    except ValueError:
        raise ProfileError(
            f"{path}: neither a CSV of 't_s,rate_bps' nor a Mahimahi trace of integer ms"
        ) from None
    seconds = max(1, math.ceil((max(stamps) + 1) / 1000))
    counts = [0] * seconds
    for ms in stamps:
        counts[ms // 1000] += 1
    # a second without any delivery opportunity still needs a positive rate
    return [[float(s), max(c, 1) * MAHIMAHI_PACKET_BYTES * 8.0] for s, c in enumerate(counts)]


def _mbit(x: float) -> float:
    return x * 1e6


PRESETS: Final[dict[str, LinkProfile]] = {
    p.name: p
    for p in (
        LinkProfile(
            name="3g",
            description="UMTS/HSPA uplink shared by the cell's cameras",
            rate_bps=_mbit(1.0),
            rtt_ms=150,
            jitter_ms=30,
            loss=0.005,
            source="3GPP TS 25.306 (HSUPA UE categories, 5.76 Mbit/s peak); practical uplink "
            "around 1 Mbit/s and RTTs of 100-200 ms as measured by Huang et al., MobiSys 2012",
        ),
        LinkProfile(
            name="lte",
            description="4G/LTE uplink, typical load",
            rate_bps=_mbit(10.0),
            rtt_ms=50,
            jitter_ms=10,
            loss=0.001,
            source="Huang et al., 'A Close Examination of Performance and Power "
            "Characteristics of 4G LTE Networks', MobiSys 2012 (uplink ~5.6 Mbit/s per "
            "device, RTT ~70 ms); 3GPP TS 36.306 (UE category peaks); ITU-R M.2134 (uplink "
            "cell spectral efficiency ~1.4 bit/s/Hz)",
        ),
        LinkProfile(
            name="lte-congested",
            description="4G/LTE uplink in the busy hour: little capacity left, varying",
            rate_bps=_mbit(1.0),
            rtt_ms=150,
            jitter_ms=50,
            loss=0.01,
            trace=(
                TracePoint(t_s=0, rate_bps=_mbit(1.5)),
                TracePoint(t_s=5, rate_bps=_mbit(0.5)),
                TracePoint(t_s=10, rate_bps=_mbit(1.0)),
                TracePoint(t_s=15, rate_bps=_mbit(0.3)),
            ),
            trace_period_s=5,
            source="same sources as 'lte'; busy-hour cells leave a fraction of the capacity "
            "and add queueing delay (order of magnitude, not a measurement)",
        ),
        LinkProfile(
            name="5g",
            description="5G NR mid-band uplink",
            rate_bps=_mbit(50.0),
            rtt_ms=20,
            jitter_ms=5,
            loss=0.0001,
            source="3GPP TS 38.306 (NR UE capabilities); ITU-R M.2410 (IMT-2020 requirements: "
            "10 ms user-plane latency eMBB); typical public uplink tens of Mbit/s",
        ),
        LinkProfile(
            name="nb-iot",
            description="NB-IoT (Cat-NB1) uplink",
            rate_bps=30_000,
            rtt_ms=1_000,
            jitter_ms=300,
            loss=0.01,
            source="3GPP TS 36.306 (Cat-NB1: ~62.5 kbit/s peak uplink); 3GPP TR 45.820 "
            "(NB-IoT latency target under 10 s)",
        ),
        LinkProfile(
            name="lte-m",
            description="LTE-M (Cat-M1) uplink",
            rate_bps=300_000,
            rtt_ms=150,
            jitter_ms=30,
            loss=0.005,
            source="3GPP TS 36.306 (Cat-M1: 1 Mbit/s peak, ~375 kbit/s half-duplex in practice)",
        ),
        LinkProfile(
            name="satellite-geo",
            description="GEO satellite return link (VSAT)",
            rate_bps=_mbit(2.0),
            rtt_ms=600,
            jitter_ms=20,
            loss=0.005,
            source="geometry: 35,786 km altitude gives ~480 ms of round-trip propagation "
            "(ITU-R S.1711 discusses GEO TCP performance); VSAT return links of a few Mbit/s",
        ),
        LinkProfile(
            name="satellite-leo",
            description="LEO constellation uplink (Starlink class)",
            rate_bps=_mbit(10.0),
            rtt_ms=45,
            jitter_ms=10,
            loss=0.002,
            source="Michel et al., 'A First Look at Starlink Performance', IMC 2022 (RTTs of "
            "tens of ms, uplink around 10 Mbit/s)",
        ),
        LinkProfile(
            name="constrained-256k",
            description="256 kbit/s uplink: the edge's design point and the emulation profile",
            rate_bps=256_000,
            rtt_ms=100,
            jitter_ms=0,
            loss=0.0,
            source="semcom design point (a few hundred kbit/s cellular uplink, MISSION.md)",
        ),
    )
}


def preset(name: str) -> LinkProfile:
    """The preset ``name``; :class:`ProfileError` listing the known ones otherwise."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ProfileError(
            f"unknown link profile {name!r}; presets: {', '.join(PRESETS)}"
        ) from None


def parse_profile(data: Mapping[str, Any], where: str = "") -> LinkProfile:
    """Validate one profile mapping; ``trace_file`` (resolved beside ``where``) is read here."""
    body = dict(data)
    label = f"profile {body.get('name', '?')!r}{f' in {where}' if where else ''}"
    trace_file = body.pop("trace_file", None)
    if trace_file is not None:
        if "trace" in body:
            raise ProfileError(f"{label}: give trace or trace_file, not both")
        path = Path(str(trace_file)).expanduser()
        if not path.is_absolute() and where:
            path = Path(where).parent / path
        body["trace"] = read_trace_file(path)
    try:
        return LinkProfile.model_validate(body)
    except ValidationError as exc:
        raise ProfileError(f"invalid {label}: {settings.describe_errors(exc.errors())}") from None


def resolve_profiles(
    items: Sequence[str | Mapping[str, Any]], where: str = ""
) -> list[LinkProfile]:
    """Preset names and inline mappings, in order; names must be unique."""
    out: list[LinkProfile] = []
    for item in items:
        out.append(preset(item) if isinstance(item, str) else parse_profile(item, where))
    names = [p.name for p in out]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ProfileError(f"profile names must be unique, repeated: {', '.join(dupes)}")
    return out


def read_yaml_any(path: Path, what: str) -> Any:
    """The YAML document in ``path`` (any top-level type); :class:`ProfileError` if unreadable."""
    import yaml

    try:
        return yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ProfileError(f"cannot read {what} {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ProfileError(f"{what} {path} is not valid YAML: {exc}") from None


def load_profiles(path: Path) -> list[LinkProfile]:
    """Profiles from a YAML file: a list, or a mapping with a ``profiles:`` list."""
    data = read_yaml_any(path, "profile file")
    items = data.get("profiles") if isinstance(data, dict) else data
    if not isinstance(items, list) or not items:
        raise ProfileError(f"{path}: expected a non-empty list of profiles under 'profiles:'")
    return resolve_profiles(items, str(path))
