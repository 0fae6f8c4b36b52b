"""Downloading manifest models (``semcom models pull``) through their libraries' own mechanisms.

Ultralytics release assets come through ``ultralytics.utils.downloads.attempt_download_asset``
and Hugging Face files through ``huggingface_hub.hf_hub_download`` (pinned to the commit the
hub reports, which the lock records), each with its library's progress bar on stderr.

Both libraries retry a failing connection for a long time (``hf_hub_download`` about 24 s here,
ultralytics up to 35 s), so the hub is probed first with one short request: an air-gapped site
gets one line at once saying how to bring the file in with ``semcom models import``. This is the
only code that goes online; the daemons only resolve names (:mod:`shared.models`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

from shared.models import (
    HubUnreachable,
    LockRecord,
    ModelEntry,
    ModelHashMismatch,
    ModelStore,
    PullError,
    sha256_file,
)

logger = logging.getLogger(__name__)

PROBE_TIMEOUT_S: Final = 5.0  # one HEAD request to the hub before the library's own retries
GITHUB: Final = "https://github.com"
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True, slots=True)
class PullResult:
    """``already``: the file was there with a good hash, nothing was downloaded."""

    entry: ModelEntry
    path: Path
    record: LockRecord
    already: bool


def pull(store: ModelStore, name: str, *, force: bool = False) -> PullResult:
    """Download ``name`` into the models directory and record it in the lock.

    Raises :class:`~shared.models.PullError` (:class:`~shared.models.HubUnreachable` offline)
    or :class:`~shared.models.ModelHashMismatch` (the download is deleted then).
    """
    entry = store.entry(name)
    if entry.download is None:
        raise PullError(
            name,
            "it has no public download (import only): copy the file to this machine and run "
            f"`semcom models import FILE --as {name}`",
        )
    target = store.path_for(entry)
    status = store.status(entry, rehash=True)
    if status.state == "hash ok" and not force:
        assert status.record is not None
        return PullResult(entry, status.path, status.record, already=True)
    if target.exists():  # a bad, unrecorded or forced file: the libraries would keep it
        target.unlink()
    if entry.download.hub == "huggingface":
        origin, revision, hub_sha = _pull_huggingface(entry, target)
    else:
        origin, revision, hub_sha = _pull_ultralytics(entry, target), None, None
    actual = sha256_file(target)
    try:
        store.check_manifest_hash(entry, target, actual, todo="the download was deleted")
        if hub_sha is not None and actual != hub_sha:
            raise ModelHashMismatch(
                name,
                target,
                expected=hub_sha,
                actual=actual,
                against="hub",
                todo="the download was deleted; pull it again",
            )
    except ModelHashMismatch:
        target.unlink(missing_ok=True)
        raise
    record = store.record(entry, source="pulled", origin=origin, revision=revision, sha256=actual)
    return PullResult(entry, target, record, already=False)


def probe(url: str, name: str, timeout_s: float = PROBE_TIMEOUT_S) -> None:
    """One HEAD request to the hub; :class:`HubUnreachable` unless it answers at all.

    Any HTTP answer (even 4xx) means the hub is reachable; proxies from the environment
    (``HTTPS_PROXY``) are used as the libraries would.
    """
    host = urlsplit(url).hostname or url
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout_s):
            return
    except urllib.error.HTTPError:
        return
    except urllib.error.URLError as exc:
        raise HubUnreachable(name, host, str(exc.reason)) from None
    except (OSError, TimeoutError) as exc:
        raise HubUnreachable(name, host, str(exc) or type(exc).__name__) from None


def _pull_huggingface(entry: ModelEntry, target: Path) -> tuple[str, str | None, str | None]:
    """(origin URL, commit, hub sha256 of the file if it is stored with LFS)."""
    assert entry.download is not None
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        raise PullError(entry.name, "HF_HUB_OFFLINE is set here: unset it to pull from the hub")
    try:
        from huggingface_hub import constants, get_hf_file_metadata, hf_hub_download, hf_hub_url
        from huggingface_hub import errors as hf_errors
    except ImportError:
        raise PullError(
            entry.name, "needs huggingface_hub: pip install 'semcom[edge]' (or [cloud])"
        ) from None
    probe(constants.ENDPOINT, entry.name)
    repo, file, revision = entry.download.repo, entry.file, entry.download.revision
    try:
        meta = get_hf_file_metadata(hf_hub_url(repo, file, revision=revision))
        commit = meta.commit_hash or revision
        url = hf_hub_url(repo, file, revision=commit)
        target.parent.mkdir(parents=True, exist_ok=True)
        downloaded = hf_hub_download(repo, file, revision=commit, local_dir=target.parent)
    except (
        hf_errors.RepositoryNotFoundError,
        hf_errors.RevisionNotFoundError,
        hf_errors.EntryNotFoundError,
    ) as exc:
        raise PullError(
            entry.name,
            f"{repo} has no {file} at revision {revision or 'main'} ({type(exc).__name__}): "
            "the manifest entry is out of date",
        ) from None
    except (hf_errors.HfHubHTTPError, OSError) as exc:
        raise PullError(entry.name, _one_line(exc)) from None
    if not isinstance(downloaded, str) or Path(downloaded).resolve() != target.resolve():
        raise PullError(entry.name, f"huggingface_hub wrote {downloaded}, not {target}")
    etag = (meta.etag or "").strip('"')
    return url, commit, etag if _SHA256.match(etag) else None


def _pull_ultralytics(entry: ModelEntry, target: Path) -> str:
    """The release URL; the file is written to ``target`` by ultralytics' downloader."""
    assert entry.download is not None
    probe(GITHUB, entry.name)
    try:
        from ultralytics.utils.downloads import attempt_download_asset
    except ImportError:
        raise PullError(entry.name, "needs ultralytics: pip install 'semcom[edge]'") from None
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        with contextlib.redirect_stdout(sys.stderr):  # its progress bar writes to stdout
            got = Path(attempt_download_asset(str(target), repo=entry.download.repo))
    except ConnectionError as exc:
        raise PullError(entry.name, _one_line(exc)) from None
    if not got.is_file() or got.resolve() != target.resolve():
        raise PullError(
            entry.name, f"{entry.download.repo} has no release asset {entry.file} (ultralytics)"
        )
    return f"{GITHUB}/{entry.download.repo}/releases ({entry.file})"


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."
