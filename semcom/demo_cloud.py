"""The demo's cloud: a ``semcom cloud serve`` child process with a configuration built here.

A child process rather than a thread: the cloud's ingest, catalog and describer then run beside
the edge's pipeline on another core, not under the same GIL, and it stops like a real service
(SIGTERM). Its config file lives in the data directory and holds token digests, never tokens;
the describer's API key goes through the child's environment.

Optional parts are used when this build has them: the ``describer`` section (with settings
that suit a short demo: 10 s windows closed soon after the data stops) and the ``decoder``
section (``--decoder``). The config model is asked, so nothing breaks when a section is not
there; the summary then says the part is not in this build.
"""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import subprocess
import sys
import time
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from semcom.demo_errors import DemoCloudError, DemoModelError

#: Describer settings for the demo (only those this build's config knows are used): windows
#: closed a moment after the camera's data stops, polled often. The window is an option.
DEMO_DESCRIBER = {"settle_s": 1.0, "idle_close_s": 2.0, "poll_s": 1.0}
DEMO_WINDOW_S = 10.0
#: Field names a decoder section may use for its checkpoint, in order of preference.
DECODER_PATH_FIELDS = ("checkpoint", "path", "ckpt", "weights")
ENV_PREFIX = "SEMCOM_CLOUD__"


@dataclass(frozen=True)
class DescriberOptions:
    base_url: str | None = None
    model: str | None = None
    api_key: str | None = None
    window_s: float = DEMO_WINDOW_S


@dataclass
class CloudPlan:
    """The child's config (YAML-ready), its extra environment, and what the optional parts
    will do (``describer``: "rules", the model name, or None when not in this build)."""

    settings: dict[str, Any]
    env: dict[str, str] = field(default_factory=dict)
    describer: str | None = None
    describer_note: str = ""
    decoder: bool = False
    decoder_note: str = ""
    window_s: float | None = None


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _terminate_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    """Linux: have the kernel send this process SIGTERM when its parent dies."""
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM, 0, 0, 0)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _section_fields(name: str) -> set[str] | None:
    """Field names of the cloud config's ``name`` section, or None when it has none."""
    from pydantic import BaseModel

    from cloud.config import CloudConfig

    info = CloudConfig.model_fields.get(name)
    if info is None:
        return None
    candidates = [info.annotation]
    if typing.get_origin(info.annotation) in (typing.Union, types.UnionType):
        candidates = list(typing.get_args(info.annotation))
    for candidate in candidates:
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return set(candidate.model_fields)
    return None


def plan_cloud(
    data_dir: Path,
    port: int,
    edges: dict[str, str],
    api_tokens: dict[str, str],
    describer: DescriberOptions,
    decoder: Path | None,
) -> CloudPlan:
    """The demo cloud's configuration; validated here, so a mistake is reported before any
    process starts."""
    from pydantic import ValidationError

    from cloud.config import CloudConfig
    from shared.settings import describe_errors

    settings: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": port,
        "data_dir": str(data_dir),
        "edges": {e: {"token_sha256": _digest(t)} for e, t in edges.items()},
        "api_tokens": {n: {"token_sha256": _digest(t)} for n, t in api_tokens.items()},
        "ice_host_addresses": ["127.0.0.1"],
    }
    plan = CloudPlan(settings)
    _plan_describer(plan, describer)
    _plan_decoder(plan, decoder)
    check = dict(settings)
    if plan.env and isinstance(check.get("describer"), dict):
        check["describer"] = {**check["describer"], "api_key": "x"}
    try:
        CloudConfig.model_validate(check)
    except ValidationError as exc:
        raise DemoModelError(
            f"invalid cloud settings for the demo: {describe_errors(exc.errors())}"
        ) from None
    return plan


def _plan_describer(plan: CloudPlan, options: DescriberOptions) -> None:
    fields = _section_fields("describer")
    wanted = options.base_url is not None
    if fields is None:
        plan.describer_note = "not in this build (no describer section in the cloud config)"
        return
    wanted_settings = {
        **DEMO_DESCRIBER,
        "window_s": options.window_s,
        "idle_close_s": min(DEMO_DESCRIBER["idle_close_s"], options.window_s),
    }
    section: dict[str, Any] = {k: v for k, v in wanted_settings.items() if k in fields}
    if wanted:
        if not options.model:
            raise DemoModelError("--describer-model is required with --describer-base-url")
        section.update(base_url=options.base_url, model=options.model)
        if options.api_key:
            plan.env[f"{ENV_PREFIX}DESCRIBER__API_KEY"] = options.api_key
        plan.describer = options.model
        plan.describer_note = f"{options.model} at {options.base_url}"
    else:
        plan.describer = "rules"
        plan.describer_note = "rules (no --describer-base-url given)"
    plan.window_s = section.get("window_s")
    plan.settings["describer"] = section


def _plan_decoder(plan: CloudPlan, checkpoint: Path | None) -> None:
    fields = _section_fields("decoder")
    if checkpoint is None:
        plan.decoder_note = "not configured (pass --decoder CKPT from `semcom cloud train-decoder`)"
        return
    if not checkpoint.is_file():
        raise DemoModelError(f"decoder checkpoint {checkpoint} does not exist (--decoder)")
    if fields is None:
        plan.decoder_note = "not in this build (no decoder section in the cloud config)"
        return
    key = next((k for k in DECODER_PATH_FIELDS if k in fields), None)
    if key is None:
        plan.decoder_note = f"this build's decoder section takes no checkpoint ({sorted(fields)})"
        return
    plan.settings["decoder"] = {key: str(checkpoint.resolve())}
    plan.decoder = True
    plan.decoder_note = f"checkpoint {checkpoint}"


class CloudProcess:
    """``semcom cloud serve --config FILE`` in a child process; its log goes to a file."""

    def __init__(self, plan: CloudPlan, data_dir: Path) -> None:
        self.plan = plan
        self.config_path = data_dir / "cloud.yaml"
        self.log_path = data_dir / "cloud.log"
        self.url = f"http://127.0.0.1:{plan.settings['port']}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.config_path.write_text(yaml.safe_dump(self.plan.settings, sort_keys=False))
        env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
        env.update(self.plan.env)
        cmd = [sys.executable, "-m", "semcom", "--log-level", "info", "cloud", "serve"]
        cmd += ["--config", str(self.config_path)]
        with open(self.log_path, "ab") as log:
            # Its own session: Ctrl-C reaches the demo, which stops the cloud once, in order.
            # If the demo itself is killed (SIGKILL, OOM), the kernel sends the cloud SIGTERM.
            self.proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                env=env,
                start_new_session=True,
                preexec_fn=_terminate_with_parent if sys.platform == "linux" else None,
            )

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def listening(self) -> bool:
        """Whether this child has bound its port (it says so once, in its log)."""
        try:
            return f"listening on {self.url}" in self.log_path.read_text(errors="replace")
        except OSError:
            return False

    def wait_ready(self, timeout_s: float = 120.0) -> None:
        """Until this child has bound its port and ``/healthz`` answers 200 (another server that
        took the port first is never mistaken for it); :class:`DemoCloudError` if it exits."""
        import httpx

        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.alive:
                raise DemoCloudError(f"the cloud did not start:\n{self.log_tail()}")
            try:
                healthy = httpx.get(f"{self.url}/healthz", timeout=2, trust_env=False).is_success
                if healthy and self.listening():
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise DemoCloudError(
            f"the cloud did not answer within {timeout_s:.0f} s (log: {self.log_path}):\n"
            f"{self.log_tail()}"
        )

    def check(self) -> None:
        """:class:`DemoCloudError` when the process has exited."""
        if self.proc is not None and not self.alive:
            raise DemoCloudError(
                f"the cloud stopped (exit {self.proc.returncode}):\n{self.log_tail()}"
            )

    def stop(self, timeout_s: float = 20.0) -> None:
        if self.proc is None or not self.alive:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
