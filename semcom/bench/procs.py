"""Real ``semcom`` processes for benchmarks: a cloud, edges, and their clean end.

Benchmarks that measure the system under faults or load start the real commands (``semcom
cloud serve``, ``semcom edge replay``) as child processes, the way an operator runs them, so
what they measure includes process start-up, sockets, signals and crashes.

- :class:`Child`: one command in its own process group (its own session, so a Ctrl-C at the
  terminal reaches only the benchmark, which then ends its children in order), its stdout and
  stderr appended to a log file; :meth:`Child.kill` is SIGKILL to the whole group,
  :meth:`Child.terminate` SIGTERM then SIGKILL. On Linux each child also gets
  ``PR_SET_PDEATHSIG`` (SIGKILL): if the benchmark itself dies (SIGKILL, OOM), the kernel ends
  the child. The signal follows the *thread* that started the child, so start children from
  the main thread.
- :class:`CloudChild`: ``semcom cloud serve --config FILE`` with a config written here (token
  digests only, never tokens); :meth:`CloudChild.wait_ready` waits for *this start's*
  ``listening on`` line and a 200 from ``/healthz``, so another server on the port is never
  mistaken for it; :meth:`CloudChild.metrics` reads ``/metrics`` with an API token.
- :class:`EdgeChild`: ``semcom edge replay`` (synthetic scene with embeddings, a recorded
  message file, or ``--drain``) with a config file for its uplink; the token goes through the
  environment.
- :class:`Children`: a context manager that ends every child it holds on exit, including on
  Ctrl-C and SIGTERM (turned into :class:`KeyboardInterrupt` while it is open).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, Final

import yaml

LISTENING: Final = "semcom cloud listening on "
EDGE_TOKEN_ENV: Final = "SEMCOM_EDGE__UPLINK__TOKEN"


class ChildError(RuntimeError):
    """A child process did not start or stopped when it should not have."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on ``host`` now (a race with other programs remains)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def digest(token: str) -> str:
    """The SHA-256 hex digest the cloud's config keeps instead of a token."""
    return hashlib.sha256(token.encode()).hexdigest()


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    """Linux: have the kernel SIGKILL this process when the thread that started it ends."""
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)


class Child:
    """One command in its own process group, restartable; output appended to ``log_path``."""

    def __init__(
        self,
        name: str,
        argv: list[str],
        log_path: Path,
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self.argv = argv
        self.log_path = log_path
        self.env = dict(env) if env is not None else None
        self.cwd = cwd
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self._log_offset = 0

    def start(self) -> None:
        """Start the command (again); :class:`ChildError` if it is still running."""
        if self.alive:
            raise ChildError(f"{self.name} is already running (pid {self.pid})")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self._log_offset = log.tell()
            self.proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                env=self.env,
                cwd=self.cwd,
                start_new_session=True,
                preexec_fn=_die_with_parent if sys.platform == "linux" else None,
            )
        self.starts += 1

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    @property
    def returncode(self) -> int | None:
        return self.proc.poll() if self.proc is not None else None

    def _signal_group(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError):  # its own session: group id == pid
            os.killpg(self.proc.pid, sig)

    def send(self, sig: signal.Signals) -> None:
        """Send ``sig`` to the process group (nothing when not running)."""
        if self.alive:
            self._signal_group(sig)

    def kill(self, timeout_s: float = 10.0) -> bool:
        """SIGKILL the process group and reap it; whether the process was running."""
        if not self.alive:
            return False
        self._signal_group(signal.SIGKILL)
        self.wait(timeout_s)
        return True

    def terminate(self, timeout_s: float = 20.0) -> bool:
        """SIGTERM, then SIGKILL after ``timeout_s``; whether the process was running."""
        if not self.alive:
            return False
        self._signal_group(signal.SIGTERM)
        if self.wait(timeout_s) is None:
            self._signal_group(signal.SIGKILL)
            self.wait(5.0)
        return True

    def wait(self, timeout_s: float | None = None) -> int | None:
        """The exit code, or None if still running after ``timeout_s``."""
        if self.proc is None:
            return None
        try:
            return self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            return None

    def log_since_start(self) -> str:
        """What the current (or last) start wrote to the log."""
        try:
            with open(self.log_path, "rb") as fh:
                fh.seek(self._log_offset)
                return fh.read().decode(errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = 20) -> str:
        return "\n".join(self.log_since_start().splitlines()[-lines:])


@dataclass(frozen=True)
class CloudSpec:
    """A cloud for a benchmark: its folder (config, log, SQLite catalog, index), port, and who
    may connect (edge id -> token, API client -> token). ``settings`` adds config keys."""

    data_dir: Path
    port: int
    edges: Mapping[str, str]
    api_tokens: Mapping[str, str] = field(default_factory=lambda: {"bench": "bench-api-token"})
    host: str = "127.0.0.1"
    ice_host_addresses: tuple[str, ...] = ("127.0.0.1",)
    settings: Mapping[str, Any] = field(default_factory=dict)
    log_level: str = "info"

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def db_path(self) -> Path:
        return self.data_dir / "catalog.db"

    def config(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "port": self.port,
            "data_dir": str(self.data_dir),
            "database": f"sqlite:///{self.db_path}",
            "edges": {e: {"token_sha256": digest(t)} for e, t in self.edges.items()},
            "api_tokens": {n: {"token_sha256": digest(t)} for n, t in self.api_tokens.items()},
            "ice_host_addresses": list(self.ice_host_addresses),
            **self.settings,
        }


def _clean_env(prefixes: tuple[str, ...]) -> dict[str, str]:
    """This environment without the given settings prefixes (a developer's SEMCOM_* must not
    leak into a benchmark's children)."""
    return {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}


class CloudChild(Child):
    """``semcom cloud serve`` for a :class:`CloudSpec`; restarts keep its data."""

    def __init__(self, spec: CloudSpec) -> None:
        spec.data_dir.mkdir(parents=True, exist_ok=True)
        self.spec = spec
        self.config_path = spec.data_dir / "cloud.yaml"
        self.config_path.write_text(yaml.safe_dump(spec.config(), sort_keys=False))
        argv = [sys.executable, "-m", "semcom", "--log-level", spec.log_level, "cloud", "serve"]
        argv += ["--config", str(self.config_path)]
        env = _clean_env(("SEMCOM_CLOUD__",))
        super().__init__("cloud", argv, spec.data_dir / "cloud.log", env=env, cwd=spec.data_dir)

    @property
    def url(self) -> str:
        return self.spec.url

    def wait_ready(self, timeout_s: float = 90.0) -> float:
        """Until this start has logged its ``listening on`` line and ``/healthz`` answers 200;
        returns the seconds waited. :class:`ChildError` if it exits or takes too long."""
        started = time.monotonic()
        deadline = started + timeout_s
        while time.monotonic() < deadline:
            if not self.alive:
                raise ChildError(f"the cloud exited ({self.returncode}):\n{self.log_tail()}")
            if f"{LISTENING}{self.url}" in self.log_since_start() and self._healthy():
                return time.monotonic() - started
            time.sleep(0.1)
        raise ChildError(f"the cloud was not ready within {timeout_s:g} s:\n{self.log_tail()}")

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/healthz", timeout=2) as response:
                return int(response.status) == 200
        except (OSError, urllib.error.URLError):
            return False

    def metrics(self, timeout_s: float = 10.0) -> dict[str, float]:
        """``/metrics`` as {``name{label="v",...}``: value} (labels sorted), via the first
        API token."""
        from prometheus_client.parser import text_string_to_metric_families

        token = next(iter(self.spec.api_tokens.values()))
        request = urllib.request.Request(
            f"{self.url}/metrics", headers={"Authorization": f"Bearer {token}"}
        )
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            text = response.read().decode()
        out: dict[str, float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
                out[f"{sample.name}{{{labels}}}" if labels else sample.name] = float(sample.value)
        return out


@dataclass(frozen=True)
class EdgeSpec:
    """An edge for a benchmark: who it is, where it sends, its spool and uplink settings.

    ``uplink`` adds keys of the edge's ``uplink`` config section (e.g. ``spool_max_bytes``,
    ``reconnect_max_s``)."""

    edge_id: str
    cloud_url: str
    token: str
    workdir: Path
    transport: str = "webrtc"
    ice_host_addresses: tuple[str, ...] = ("127.0.0.1",)
    uplink: Mapping[str, Any] = field(default_factory=dict)

    @property
    def spool_path(self) -> Path:
        return self.workdir / f"{self.edge_id}.spool.db"

    def config(self) -> dict[str, Any]:
        return {
            "edge_id": self.edge_id,
            "uplink": {
                "cloud": self.cloud_url,
                "transport": self.transport,
                "spool_path": str(self.spool_path),
                "ice_host_addresses": list(self.ice_host_addresses),
                **self.uplink,
            },
        }


@dataclass(frozen=True)
class SyntheticStream:
    """``semcom edge replay --synthetic``: a traffic scene with embeddings (synthetic vectors)
    for ``seconds``; 0 sends nothing new and only drains the spool (announcing the same
    Hello as the stream did)."""

    seconds: float
    tracks_per_s: float = 4.0
    update_s: float = 1.0
    dim: int = 768

    def args(self) -> list[str]:
        return [
            "--synthetic",
            "--seconds",
            f"{max(self.seconds, 0.0):.3f}",
            "--tracks-per-s",
            str(self.tracks_per_s),
            "--update-s",
            str(self.update_s),
            "--dim",
            str(self.dim),
        ]


class EdgeChild(Child):
    """``semcom edge replay`` for an :class:`EdgeSpec`: a synthetic stream, a recorded message
    FILE (``Path``), or ``None`` for ``--drain``. :meth:`restart_with` changes the stream for
    the next start (e.g. the rest of a synthetic stream after a kill)."""

    def __init__(
        self,
        spec: EdgeSpec,
        stream: SyntheticStream | Path | None,
        *,
        report: bool = True,
        log_level: str = "info",
    ) -> None:
        spec.workdir.mkdir(parents=True, exist_ok=True)
        self.spec = spec
        self.config_path = spec.workdir / f"{spec.edge_id}.yaml"
        self.config_path.write_text(yaml.safe_dump(spec.config(), sort_keys=False))
        self.report_path = spec.workdir / f"{spec.edge_id}.report.json" if report else None
        self.log_level = log_level
        env = _clean_env(("SEMCOM_EDGE__",))
        env[EDGE_TOKEN_ENV] = spec.token
        log = spec.workdir / f"{spec.edge_id}.log"
        super().__init__(spec.edge_id, self._argv(stream), log, env=env, cwd=spec.workdir)

    def _argv(self, stream: SyntheticStream | Path | None) -> list[str]:
        argv = [sys.executable, "-m", "semcom", "--log-level", self.log_level, "edge", "replay"]
        argv += ["--config", str(self.config_path)]
        if self.report_path is not None:
            argv += ["--report", str(self.report_path)]
        if isinstance(stream, SyntheticStream):
            argv += stream.args()
        elif isinstance(stream, Path):
            argv.append(str(stream))
        else:
            argv.append("--drain")
        return argv

    def restart_with(self, stream: SyntheticStream | Path | None) -> None:
        """Use ``stream`` from the next :meth:`start` on."""
        self.argv = self._argv(stream)


class Children:
    """Holds child processes and ends them all on exit (Ctrl-C and SIGTERM included)."""

    def __init__(self) -> None:
        self.children: list[Child] = []
        self._previous: dict[int, Any] = {}

    def add(self, child: Child) -> Child:
        self.children.append(child)
        return child

    def __enter__(self) -> Children:
        def interrupt(signum: int, _frame: FrameType | None) -> None:
            raise KeyboardInterrupt(f"signal {signum}")

        for sig in (signal.SIGTERM, signal.SIGHUP):
            try:
                self._previous[sig] = signal.signal(sig, interrupt)
            except ValueError:  # not the main thread: the caller handles signals
                break
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def close(self, timeout_s: float = 10.0) -> None:
        """SIGTERM every running child (edges first, the order they were added in reverse),
        SIGKILL those still running after ``timeout_s``."""
        running = [c for c in reversed(self.children) if c.alive]
        for child in running:
            child.send(signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        for child in running:
            if child.wait(max(0.0, deadline - time.monotonic())) is None:
                child.kill()
