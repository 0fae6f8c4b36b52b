"""The uplink end to end: real ``semcom cloud serve`` processes, real aiortc peers on 127.0.0.1."""

from __future__ import annotations

import itertools
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from edge.errors import UplinkRejected
from edge.spool import Priority, priority_of
from shared.codec import decode
from shared.framing import read_frames
from shared.messages import CameraInfo, Hello
from shared.pq import fit_pq
from shared.synthetic import ClusteredSpec, clustered_embeddings
from tests.uplink.conftest import (
    API_TOKEN,
    EDGE,
    TOKEN,
    Cloud,
    EdgeThread,
    content,
    edge_cli,
    edge_env,
    said,
    spool_counter,
    spool_pending,
    uplink_config,
    wait_for,
    write_stream,
)

pytestmark = pytest.mark.uplink


def spooled_frames(stream: Path) -> list[bytes]:
    """The data frames of a message file, as single frames (what the spool keeps)."""
    with open(stream, "rb") as fh:
        return [f for f in read_frames(fh) if decode(f).seq]


def _data(envs: list) -> set[tuple[int, str]]:
    return {said(e) for e in envs if e.seq != 0}


@pytest.mark.parametrize("transport", ["webrtc", "websocket"])
def test_handshake_sends_everything_once_and_acks_empty_the_spool(
    cloud: Cloud, tmp_path: Path, transport: str
) -> None:
    cloud.start()
    stream = tmp_path / "stream.smf"
    envs = write_stream(stream, seconds=3.0)
    edge = EdgeThread(uplink_config(cloud, tmp_path, transport=transport), file=stream)
    edge.start()
    edge.join(60)
    assert edge.error is None, edge.error
    assert edge.report is not None
    assert edge.report.left_in_spool == 0
    assert edge.report.uplink["connects"] == 1
    # sent as bundle frames (protocol 4), smaller than the frames the spool keeps
    assert edge.report.uplink["sent_bundles"] >= 1
    assert edge.report.uplink["sent_bytes"] < sum(len(f) for f in spooled_frames(stream)) / 2
    stored = cloud.stored()
    assert {content(f) for _, _, f in stored} == _data(envs)
    assert len(stored) == len(_data(envs))
    metrics = cloud.metrics()
    assert f'semcom_frames_stored_total{{edge="{EDGE}"}} {float(len(stored))}' in metrics
    # Restart with the same spool: nothing is pending, the cloud's watermark agrees.
    again = EdgeThread(uplink_config(cloud, tmp_path, transport=transport))
    again.start()
    again.join(30)
    assert again.error is None
    assert again.report is not None
    assert again.report.uplink["sent_frames"] == 0
    assert len(cloud.stored()) == len(stored)


def test_a_recorded_file_is_replayed_under_its_own_hello(cloud: Cloud, tmp_path: Path) -> None:
    # The recording's encoder and dim decide the embedding space, not the replayer's defaults.
    cloud.start()
    stream = tmp_path / "recorded.smf"
    recorded = Hello(
        "0.0.1",
        "yolo11n.onnx",
        "vit_recorded",
        48,
        (),
        (CameraInfo("cam-r", 640, 360, 25.0),),
        True,
    )
    envs = write_stream(stream, seconds=2.0, dim=48, hello=recorded)
    edge = EdgeThread(uplink_config(cloud, tmp_path), file=stream, dim=64)
    edge.start()
    edge.join(60)
    assert edge.error is None, edge.error
    assert len(cloud.stored()) == len(_data(envs))
    with sqlite3.connect(cloud.db) as conn:
        edges = conn.execute(
            "SELECT encoder, embedding_dim, random_init_encoder FROM edges"
        ).fetchall()
        spaces = [name for (name,) in conn.execute("SELECT name FROM spaces")]
    assert edges == [("vit_recorded", 48, 1)]
    assert spaces == ["vit_recorded-48-random-init"]


def test_wrong_token_is_refused_before_any_peer_exists(cloud: Cloud, tmp_path: Path) -> None:
    cloud.start()
    stream = tmp_path / "stream.smf"
    write_stream(stream, seconds=1.0)
    config = uplink_config(cloud, tmp_path, token="not-the-token")
    edge = EdgeThread(config, file=stream)
    edge.start()
    edge.join(30)
    assert isinstance(edge.error, UplinkRejected)
    assert "HTTP 403" in str(edge.error)
    assert f"edge '{EDGE}' is unknown or its token is wrong" in str(edge.error)
    # Messages stay spooled for when the token is fixed.
    assert spool_pending(tmp_path / "spool.db") > 0
    # Straight HTTP: no header is 401, unknown edge 403, and neither creates a session.
    url = f"{cloud.url}/v1/edges/{EDGE}/session"
    sdp = {"Content-Type": "application/sdp"}
    r = httpx.post(url, content=b"v=0", headers=sdp, trust_env=False)
    assert r.status_code == 401
    assert "Bearer" in r.json()["detail"]
    r = httpx.post(
        f"{cloud.url}/v1/edges/intruder/session",
        content=b"v=0",
        headers={**sdp, "Authorization": f"Bearer {TOKEN}"},
        trust_env=False,
    )
    assert r.status_code == 403
    metrics = cloud.metrics()
    assert 'semcom_auth_failures_total{reason="rejected"} 2.0' in metrics
    assert 'semcom_auth_failures_total{reason="missing"} 1.0' in metrics
    assert 'semcom_signaling_requests_total{outcome="accepted"}' not in metrics
    assert "semcom_sessions_active 0.0" in metrics
    assert cloud.stored() == []


def test_codec_mismatch_is_reported_on_the_edge_and_logged_on_the_cloud(
    cloud: Cloud, tmp_path: Path
) -> None:
    sample = clustered_embeddings(2000, ClusteredSpec(64), seed=3)
    ours, theirs = tmp_path / "edge-pq.npz", tmp_path / "cloud-pq.npz"
    fit_pq(sample, m=8, seed=1).save(ours)
    fit_pq(sample, m=8, seed=2).save(theirs)  # same codec id, another codebook
    cloud.extra = ["--codebook", str(theirs)]
    cloud.start()
    stream = tmp_path / "stream.smf"
    write_stream(stream, seconds=1.0)
    edge = EdgeThread(uplink_config(cloud, tmp_path, ladder=["f16", str(ours)]), file=stream)
    edge.start()
    edge.join(30)
    assert isinstance(edge.error, UplinkRejected)
    assert "CODEC_MISMATCH" in str(edge.error)
    assert "pq8x8" in str(edge.error)
    assert "pq8x8" in cloud.log.read_text()
    assert cloud.stored() == []


def test_cloud_killed_mid_stream_and_restarted_stores_everything_once(
    cloud: Cloud, tmp_path: Path
) -> None:
    cloud.start()
    stream = tmp_path / "stream.smf"
    envs = write_stream(stream, seconds=10.0)
    expected = _data(envs)
    edge = EdgeThread(uplink_config(cloud, tmp_path), file=stream, rate=len(expected) / 6.0)
    edge.start()
    wait_for(lambda: len(cloud.stored()) >= len(expected) // 3, 30, "a third stored")
    cloud.kill()
    killed_at = len(cloud.stored())
    assert killed_at < len(expected)
    time.sleep(2.0)
    cloud.start()  # same port, same database
    edge.join(90)
    assert edge.error is None, edge.error
    assert edge.report is not None
    assert edge.report.left_in_spool == 0
    assert edge.report.uplink["connects"] >= 2
    stored = cloud.stored()
    assert len(stored) == len(expected)
    assert {content(f) for _, _, f in stored} == expected
    assert len({seq for seq, _, _ in stored}) == len(stored)


def test_edge_killed_and_restarted_resends_its_spool(cloud: Cloud, tmp_path: Path) -> None:
    cloud.start()
    stream = tmp_path / "stream.smf"
    envs = write_stream(stream, seconds=6.0)
    expected = _data(envs)
    first = subprocess.Popen(
        [*edge_cli(cloud, tmp_path, str(stream)), "--max-rate", "8kbit"],
        env={**edge_env(), "SEMCOM_EDGE__UPLINK__BURST_BYTES": "1024"},
        stderr=subprocess.DEVNULL,
    )
    spool = tmp_path / "spool.db"

    def all_spooled() -> bool:
        return spool_counter(spool, "next_seq") > len(expected)

    wait_for(lambda: all_spooled() and len(cloud.stored()) >= 5, 30, "spooled and sending")
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    assert len(cloud.stored()) < len(expected)
    second = subprocess.run(
        [*edge_cli(cloud, tmp_path, "--drain")], env=edge_env(), capture_output=True, timeout=90
    )
    assert second.returncode == 0, second.stderr.decode()[-2000:]
    assert b"0 left in the spool" in second.stderr
    stored = cloud.stored()
    assert len(stored) == len(expected)
    assert {content(f) for _, _, f in stored} == expected


@pytest.mark.slow
def test_backlog_of_a_30_s_outage_drains_in_priority_order(cloud: Cloud, tmp_path: Path) -> None:
    cloud.start()
    stream = tmp_path / "stream.smf"
    envs = write_stream(stream, seconds=20.0)
    expected = _data(envs)
    config = uplink_config(cloud, tmp_path, max_rate="96kbit")
    edge = EdgeThread(config, file=stream, rate=len(expected) / 10.0)
    edge.start()
    wait_for(lambda: len(cloud.stored()) >= 20, 30, "the first messages")
    cloud.kill()
    outage_start = time.time_ns() // 1_000
    time.sleep(30.0)
    assert spool_pending(tmp_path / "spool.db") > 100  # the stream went on during the outage
    cloud.start()
    edge.join(120)
    assert edge.error is None, edge.error
    stored = cloud.stored()
    assert len(stored) == len(expected)
    assert {content(f) for _, _, f in stored} == expected
    # After the outage, batch after batch, no frame is less important than a later one.
    after = [(rx, priority_of(decode(f).message)) for _, rx, f in stored if rx > outage_start]
    batches: dict[int, list[Priority]] = {}
    for rx, prio in after:
        batches.setdefault(rx, []).append(prio)
    ordered = [batches[k] for k in sorted(batches)]
    assert len(ordered) > 5
    for earlier, later in itertools.pairwise(ordered):
        assert max(earlier) <= min(later), (earlier, later)
    kinds = {p for group in ordered for p in group}
    assert {Priority.FIRST_SIGHT, Priority.TRACK_END, Priority.COUNTS} <= kinds


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "semcom test cloud")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    certfile, keyfile = tmp_path / "cert.pem", tmp_path / "key.pem"
    certfile.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    keyfile.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return certfile, keyfile


def test_signaling_over_tls_with_a_private_ca(cloud: Cloud, tmp_path: Path) -> None:
    certfile, keyfile = _self_signed(tmp_path)
    config = cloud.workdir / "cloud.yaml"
    config.write_text(f"tls:\n  certfile: {certfile}\n  keyfile: {keyfile}\n")
    cloud.extra = ["--config", str(config)]
    cloud.start()
    assert "https://" in cloud.log.read_text()
    stream = tmp_path / "stream.smf"
    envs = write_stream(stream, seconds=1.0)
    https = cloud.url.replace("http://", "https://")
    plain = uplink_config(cloud, tmp_path, spool_path=tmp_path / "untrusted.db")
    untrusted = EdgeThread(plain.model_copy(update={"cloud": https}), file=stream)
    untrusted.start()
    untrusted.join(8)  # keeps retrying: the certificate is not trusted
    assert untrusted.is_alive()
    untrusted.stop_event.set()
    untrusted.join(30)
    assert cloud.stored() == []
    trusting = uplink_config(cloud, tmp_path, ca_file=certfile)
    edge = EdgeThread(trusting.model_copy(update={"cloud": https}), file=stream)
    edge.start()
    edge.join(60)
    assert edge.error is None, edge.error
    assert len(cloud.stored()) == len(_data(envs))


def test_serve_takes_a_decoder_checkpoint_flag(cloud: Cloud, tmp_path: Path) -> None:
    from tests.cloud.test_decoder_api import write_decoder

    auth = {"Authorization": f"Bearer {API_TOKEN}"}
    cloud.start()  # no decoder: the image route says so
    reply = httpx.get(f"{cloud.url}/v1/detections/1/image", headers=auth, timeout=30)
    assert (reply.status_code, reply.json()["error"]["code"]) == (503, "decoder_unavailable")
    cloud.stop()
    cloud.extra = ["--decoder", str(write_decoder(tmp_path / "decoder.pt"))]
    cloud.start()  # with one: an unknown detection is a plain 404
    reply = httpx.get(f"{cloud.url}/v1/detections/1/image", headers=auth, timeout=30)
    assert (reply.status_code, reply.json()["error"]["code"]) == (404, "not_found")
