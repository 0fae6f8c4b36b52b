"""Link profiles, bandwidth traces and scenarios: parsing and precise validation errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from sim.errors import ProfileError, ScenarioError
from sim.profiles import PRESETS, BandwidthTrace, load_profiles, parse_profile, preset
from sim.scenarios import BUILTIN, load_scenario


def test_every_preset_validates_and_cites_a_source() -> None:
    assert {"3g", "lte", "lte-congested", "5g", "nb-iot", "lte-m", "satellite-geo"} <= set(PRESETS)
    for p in PRESETS.values():
        assert p.source
        assert p.rate_bps > 0
    assert preset("lte").rtt_ms == 50
    with pytest.raises(ProfileError, match=r"unknown link profile 'wifi'.*presets: 3g, lte"):
        preset("wifi")


def test_a_yaml_file_with_rates_in_units_and_trace_files(tmp_path: Path) -> None:
    (tmp_path / "steps.csv").write_text("t_s,rate_bps\n0,1000000\n2,250000\n")
    (tmp_path / "cell.mahi").write_text("\n".join(str(ms) for ms in range(0, 2000, 10)))
    path = tmp_path / "links.yaml"
    path.write_text(
        """
profiles:
  - {name: site-a, rate_bps: 2mbit, rtt_ms: 80, jitter_ms: 5, loss: 0.01, source: survey}
  - {name: site-b, rate_bps: 1mbit, rtt_ms: 40, trace_file: steps.csv, trace_period_s: 2}
  - {name: site-c, rate_bps: 1mbit, rtt_ms: 40, trace_file: cell.mahi}
  - {name: site-d, rate_bps: 300kbit, rtt_ms: 40, trace: [[0, 1mbit], [1, 100kbit]]}
"""
    )
    a, b, c, d = load_profiles(path)
    assert a.rate_bps == 2e6
    assert a.loss == 0.01
    assert [(p.t_s, p.rate_bps) for p in b.trace] == [(0, 1e6), (2, 250_000)]
    assert b.mean_rate_bps == pytest.approx(625_000)
    # 100 delivery opportunities of 1,500 B per second
    assert c.trace[0].rate_bps == pytest.approx(100 * 1_500 * 8)
    assert d.bandwidth().rate_at(1.5) == 100_000


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"rate_bps": "fast", "rtt_ms": 1}, "rate_bps: Value error, 'fast' is not a rate"),
        ({"rate_bps": 1e6, "rtt_ms": -5}, "rtt_ms: Input should be greater than or equal to 0"),
        ({"rate_bps": 1e6, "rtt_ms": 5, "loss": 0.7}, "loss: Input should be less than 0.5"),
        ({"rate_bps": 1e6, "rtt_ms": 5, "latency": 3}, "latency: Extra inputs are not permitted"),
        ({"rtt_ms": 5}, "rate_bps: Field required"),
        (
            {"rate_bps": 1e6, "rtt_ms": 5, "trace": [[1, 1e6]]},
            "trace must start at t_s = 0, starts at 1.0",
        ),
        (
            {"rate_bps": 1e6, "rtt_ms": 5, "trace": [[0, 1e6], [4, 2e6], [3, 1e6]]},
            "trace times must increase: point 2 at 3.0 s follows 4.0 s",
        ),
        ({"rate_bps": 1e6, "rtt_ms": 5, "trace": [[0, -1]]}, "trace.0.rate_bps"),
    ],
)
def test_invalid_profiles_say_which_field_and_why(body: dict[str, object], message: str) -> None:
    with pytest.raises(ProfileError) as err:
        parse_profile({"name": "bad", **body}, "links.yaml")
    assert "invalid profile 'bad' in links.yaml" in str(err.value)
    assert message in str(err.value)


def test_file_level_errors(tmp_path: Path) -> None:
    dupes = tmp_path / "d.yaml"
    dupes.write_text("- {name: a, rate_bps: 1, rtt_ms: 1}\n- {name: a, rate_bps: 2, rtt_ms: 1}\n")
    with pytest.raises(ProfileError, match="unique, repeated: a"):
        load_profiles(dupes)
    empty = tmp_path / "e.yaml"
    empty.write_text("profiles: []\n")
    with pytest.raises(ProfileError, match="non-empty list of profiles"):
        load_profiles(empty)
    broken = tmp_path / "b.yaml"
    broken.write_text("profiles: [\n")
    with pytest.raises(ProfileError, match="is not valid YAML"):
        load_profiles(broken)
    bad_trace = tmp_path / "t.csv"
    bad_trace.write_text("0,1000\nsoon,2000\n")
    with pytest.raises(ProfileError, match=r"t.csv:2: expected 't_s,rate_bps'"):
        parse_profile({"name": "x", "rate_bps": 1, "rtt_ms": 1, "trace_file": str(bad_trace)})


def test_a_transmission_across_rate_steps_integrates_the_trace() -> None:
    trace = BandwidthTrace([0.0, 1.0], [1_000.0, 4_000.0], period_s=2.0)
    assert trace.mean_bps == 2_500
    assert trace.transmit_end(0.5, 500) == pytest.approx(1.0)  # 0.5 s at 1 kbit/s
    assert trace.transmit_end(0.5, 2_500) == pytest.approx(1.5)  # then 0.5 s at 4 kbit/s
    assert trace.transmit_end(1.5, 3_000) == pytest.approx(3.0)  # 2,000 b, then 1 kbit/s again
    assert trace.rate_at(3.2) == 4_000


def test_scenarios_by_name_and_file(tmp_path: Path) -> None:
    paper = load_scenario("paper")
    assert paper.name == "paper"
    assert paper.encoder == "vit_base_patch16_224"
    assert next(p.name for p in paper.profiles) == "constrained-256k"
    assert set(BUILTIN) >= {"paper", "quick"}
    with pytest.raises(ScenarioError, match=r"not a built-in .*paper.* nor a YAML file"):
        load_scenario("nope")
    path = tmp_path / "Site.yaml"
    path.write_text(
        "profiles: [lte, {name: mine, rate_bps: 500kbit, rtt_ms: 60}]\n"
        "cameras: [1, 4]\nlatency_target_ms: 800\n"
    )
    s = load_scenario(str(path))
    assert s.name == "site"
    assert [p.name for p in s.profiles] == ["lte", "mine"]
    path.write_text("profiles: [lte, wifi]\ncamera: [1]\n")
    with pytest.raises(ScenarioError) as err:
        load_scenario(str(path))
    text = str(err.value)
    assert "unknown link profile 'wifi'" in text
    assert "camera: Extra inputs are not permitted" in text


def test_the_deploy_examples_validate() -> None:
    root = Path(__file__).resolve().parents[2] / "deploy" / "sim"
    assert [p.name for p in load_profiles(root / "profiles.example.yaml")] == [
        "rural-site",
        "stepped",
    ]
    scenario = load_scenario(str(root / "scenario.example.yaml"))
    assert scenario.name == "my-city"
    assert scenario.profiles[-1].trace[1].rate_bps == 800_000
