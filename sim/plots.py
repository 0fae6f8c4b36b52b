"""PNG plots of a scenario run (matplotlib, Agg backend: no display needed).

- ``bytes.png``: bytes/s per strategy, log scale, with the raw 2048 x 2048 reference;
- ``latency_cdf_n{N}.png``: end-to-end latency CDFs per link at N cameras;
- ``cameras.png``: cameras per cell within the latency target, per link and strategy.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from sim.runner import ScenarioRun
from sim.strategies import RAW_2048_FRAME_BYTES


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _title(run: ScenarioRun, text: str) -> str:
    suffix = " [random-init encoder]" if run.recording.random_init else ""
    return f"{text} - scenario {run.scenario.name}{suffix}"


def plot_bytes(run: ScenarioRun, path: Path) -> None:
    plt = _pyplot()
    names = [p.name for p in run.payloads]
    values = [max(p.bytes_per_s, 1e-3) for p in run.payloads]
    fig, ax = plt.subplots(figsize=(9, 0.4 * len(names) + 1.8))
    ax.barh(names, values, color="tab:blue")
    ax.axvline(
        RAW_2048_FRAME_BYTES * run.recording.fps,
        color="tab:red",
        linestyle="--",
        label="raw 2048x2048 frames",
    )
    ax.set_xscale("log")
    ax.invert_yaxis()
    ax.set_xlabel("bytes per second of video (one camera)")
    ax.set_title(_title(run, "Payload per strategy"), fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_latency(run: ScenarioRun, cameras: int, path: Path) -> bool:
    plt = _pyplot()
    profiles = [p.name for p in run.scenario.profiles]
    fig, axes = plt.subplots(
        len(profiles), 1, figsize=(8, 2.6 * len(profiles)), squeeze=False, sharex=True
    )
    drawn = False
    names = [p.name for p in run.payloads]
    colours = plt.get_cmap("tab20")
    for ax, profile in zip(axes[:, 0], profiles, strict=True):
        for r in run.runs:
            if r.profile != profile or r.cameras != cameras or not len(r.latencies_s):
                continue
            x = np.sort(r.latencies_s) * 1e3
            y = np.arange(1, len(x) + 1) / max(r.messages, 1)
            i = names.index(r.strategy) if r.strategy in names else 0
            style = "--" if r.strategy.startswith("semcom") else "-"
            ax.step(
                x, y, where="post", label=r.strategy, linewidth=1.2, color=colours(i % 20),
                linestyle=style,
            )  # fmt: skip
            drawn = True
        ax.axvline(run.scenario.latency_target_ms, color="grey", linestyle=":")
        ax.set_xscale("log")
        ax.set_ylim(0, 1.02)
        ax.set_ylabel(f"{profile}\nshare of messages", fontsize=8)
    axes[-1, 0].set_xlabel("end-to-end latency (ms)")
    seen: dict[str, Any] = {}
    for ax in axes[:, 0]:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            seen.setdefault(label, handle)
    if seen:
        fig.legend(list(seen.values()), list(seen), fontsize=7, loc="center right")
    fig.suptitle(_title(run, f"Latency CDF, {cameras} camera(s)"), fontsize=9)
    fig.tight_layout(rect=(0, 0, 0.78, 0.97))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return drawn


def plot_cameras(run: ScenarioRun, path: Path) -> None:
    plt = _pyplot()
    profiles = [p.name for p in run.scenario.profiles]
    strategies = [
        s for s in run.scenario.capacity_strategies if any(c.strategy == s for c in run.capacities)
    ]
    fig, ax = plt.subplots(figsize=(9, 4))
    width = 0.8 / max(len(strategies), 1)
    for i, strategy in enumerate(strategies):
        values = []
        for profile in profiles:
            cap = next(
                (c for c in run.capacities if c.profile == profile and c.strategy == strategy),
                None,
            )
            values.append(cap.cameras if cap is not None else 0)
        x = np.arange(len(profiles)) + i * width
        ax.bar(x, values, width, label=strategy)
    ax.set_yscale("symlog", linthresh=1)
    ax.set_xticks(np.arange(len(profiles)) + width * (len(strategies) - 1) / 2, profiles)
    ax.set_ylabel("cameras per cell")
    ax.set_title(
        _title(
            run,
            f"Cameras within p{run.scenario.percentile:g} <= {run.scenario.latency_target_ms:g} "
            f"ms (limit {run.scenario.max_cameras})",
        ),
        fontsize=9,
    )
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_plots(run: ScenarioRun, out: Path) -> list[str]:
    """Every plot into ``out``; returns the file names written."""
    names = ["bytes.png"]
    plot_bytes(run, out / "bytes.png")
    for n in run.scenario.cameras:
        name = f"latency_cdf_n{n}.png"
        if plot_latency(run, n, out / name):
            names.append(name)
        else:
            (out / name).unlink(missing_ok=True)
    if run.capacities:
        plot_cameras(run, out / "cameras.png")
        names.append("cameras.png")
    return names
