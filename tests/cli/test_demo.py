"""``semcom demo`` end to end (real cloud process, real WebRTC link), its errors, and the
pixel baselines of :mod:`sim.media`."""

from __future__ import annotations

import http.server
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from semcom.cli import cli
from sim.media import H264Meter, MediaError, h264_bytes, jpeg_bytes, raw_bytes


def _scene(width: int = 320, height: int = 240, seed: int = 0) -> np.ndarray:
    """A frame like a camera's: gradients, coarse texture and two objects."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:height, :width]
    texture = np.kron(rng.integers(0, 60, (height // 8 + 1, width // 8 + 1, 3)), np.ones((8, 8, 1)))
    img = np.stack([xx * 0.4, yy * 0.5, (xx + yy) * 0.2], -1) + texture[:height, :width]
    img[40:120, 30:150] = (40, 40, 200)
    img[140:200, 180:300] = (200, 160, 30)
    return np.asarray(img.clip(0, 255), np.uint8)


# ---------------------------------------------------------------- sim.media


def test_h264_of_a_static_scene_is_far_smaller_than_raw() -> None:
    frame = _scene()
    n = 25
    size = h264_bytes([frame] * n, fps=25.0)
    one = h264_bytes([frame], fps=25.0)
    assert 0 < size < raw_bytes(320, 240, n) / 100
    # inter prediction: 25 copies cost far less than 25 separately coded frames
    assert size < n * one / 4


def test_h264_crf_and_odd_sizes() -> None:
    frames = [_scene(seed=i) for i in range(5)]
    assert h264_bytes(frames, 10.0, crf=18) > h264_bytes(frames, 10.0, crf=40)
    odd = [f[:239, :319] for f in frames]  # libx264 4:2:0 needs even sizes: cropped by one line
    assert h264_bytes(odd, 10.0) > 0


def test_h264_meter_refuses_bad_frames() -> None:
    meter = H264Meter(25.0)
    meter.add(_scene())
    with pytest.raises(MediaError, match="320x240"):
        meter.add(_scene(width=160))
    with pytest.raises(MediaError, match="uint8"):
        meter.add(_scene().astype(np.float32))  # type: ignore[arg-type]
    assert meter.close() > 0
    with pytest.raises(MediaError, match="closed"):
        meter.add(_scene())


def test_jpeg_size_grows_with_quality() -> None:
    frame = _scene()
    sizes = [jpeg_bytes(frame, q) for q in (10, 30, 50, 70, 90)]
    assert sizes == sorted(sizes)
    assert len(set(sizes)) == len(sizes)
    assert sizes[-1] < raw_bytes(320, 240)
    with pytest.raises(MediaError):
        jpeg_bytes(frame, 0)


# ---------------------------------------------------------------- the command


def test_demo_user_errors_are_one_line(tmp_path: Path) -> None:
    runner = CliRunner()
    missing = runner.invoke(cli, ["demo", "--source", str(tmp_path / "nope.mp4")])
    assert missing.exit_code == 1
    assert "nope.mp4 does not exist" in missing.output
    assert "Traceback" not in missing.output
    (tmp_path / "clip.mp4").write_bytes(b"")
    bad = runner.invoke(
        cli, ["demo", "--source", str(tmp_path / "clip.mp4"), "--detector", "/no/such.onnx"]
    )
    assert bad.exit_code == 1
    assert "detector model not found: /no/such.onnx" in bad.output
    assert "Traceback" not in bad.output


def test_demo_cloud_plan_keeps_secrets_out_of_its_file(tmp_path: Path) -> None:
    from semcom.demo_cloud import DescriberOptions, plan_cloud

    plan = plan_cloud(
        tmp_path,
        8443,
        {"demo-edge": "edge-secret"},
        {"demo": "api-secret"},
        DescriberOptions("http://127.0.0.1:9/v1", "some-vlm", "key-secret", window_s=5.0),
        None,
    )
    text = yaml.safe_dump(plan.settings)
    for secret in ("edge-secret", "api-secret", "key-secret"):
        assert secret not in text
    assert plan.env == {"SEMCOM_CLOUD__DESCRIBER__API_KEY": "key-secret"}
    assert plan.describer == "some-vlm"
    assert plan.settings["describer"]["window_s"] == 5.0
    assert "decoder" not in plan.settings
    assert "--decoder" in plan.decoder_note


def test_demo_never_takes_another_server_on_its_port_for_its_cloud(tmp_path: Path) -> None:
    from semcom.demo_cloud import CloudProcess, DescriberOptions, plan_cloud
    from semcom.demo_errors import DemoCloudError

    class Healthy(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), Healthy) as impostor:
        threading.Thread(target=impostor.serve_forever, daemon=True).start()
        port = impostor.server_address[1]
        plan = plan_cloud(tmp_path, port, {}, {}, DescriberOptions(None, None, None), None)
        cloud = CloudProcess(plan, tmp_path)
        cloud.start()
        try:
            with pytest.raises(DemoCloudError, match="cannot listen"):
                cloud.wait_ready(timeout_s=60)
        finally:
            cloud.stop()
            impostor.shutdown()


@pytest.mark.skipif(sys.platform != "linux", reason="PR_SET_PDEATHSIG is Linux's")
def test_the_demo_cloud_ends_when_the_demo_is_killed() -> None:
    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import subprocess, sys, time\n"
            "from semcom.demo_cloud import _terminate_with_parent\n"
            "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'],"
            " preexec_fn=_terminate_with_parent)\n"
            "print(child.pid, flush=True)\n"
            "time.sleep(60)\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    parent.kill()  # SIGKILL: the demo gets no chance to stop its cloud
    parent.wait(10)
    parent.stdout.close()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and Path(f"/proc/{child}").exists():
        if Path(f"/proc/{child}/stat").read_text().split()[2] == "Z":
            break  # ended, not yet reaped by init
        time.sleep(0.05)
    else:
        assert not Path(f"/proc/{child}").exists(), "the child outlived its killed parent"


@pytest.mark.realdata
@pytest.mark.uplink
def test_demo_end_to_end_on_the_real_video(shared_data: Path, tmp_path: Path) -> None:
    """Cloud process + edge over WebRTC on 2 s of the real clip, tiny random-init encoder."""
    data_dir = tmp_path / "demo"
    result = CliRunner().invoke(
        cli,
        [
            "demo",
            "--source",
            str(shared_data / "videos" / "cars_kraten.mp4"),
            "--seconds",
            "2",
            "--detector",
            str(shared_data / "weights" / "yolo11n_int8_coco_320.onnx"),
            "--encoder",
            "vit_tiny_patch16_224",
            "--random-init-encoder",
            "--describe-window",
            "2",
            "--data-dir",
            str(data_dir),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    edge, b, cloud = summary["edge"], summary["bytes"], summary["cloud"]
    assert summary["random_init_encoder"] is True
    assert any("RANDOM-INIT" in note for note in summary["notes"])
    # 2 s of a 25 fps video, every frame processed, every message acknowledged
    assert edge["frames"] == edge["captured"] == 50
    assert edge["left_in_spool"] == 0
    assert edge["acked_frames"] == edge["sent_frames"] > 0
    assert b["raw_frames"] == 50 * 640 * 360 * 3
    assert 0 < b["semcom_sent"] < b["h264"] < b["raw_frames"]
    assert b["reduction_vs_raw_pct"] > 99.0
    # what the cloud stored, read back through the API
    assert cloud["tracks"] > 0
    assert sum(cloud["tracks_by_class"].values()) == cloud["tracks"]
    assert cloud["embeddings"] > 0
    search = summary["search"]
    assert "error" not in search, search
    assert search["random_init_encoder"] is True
    assert all(-1.01 <= hit["score"] <= 1.01 for hit in search["hits"])
    descriptions = summary["descriptions"]
    if (
        descriptions["describer_label"] != "none"
        and "not in this build" not in (descriptions["status"])
    ):
        assert descriptions["items"], descriptions["status"]
        assert all(item["describer"] == "rules" for item in descriptions["items"])
    assert summary["api"]["token"]
    assert summary["api"]["url"].startswith("http://127.0.0.1:")
    assert (data_dir / "cloud.yaml").is_file()
    assert (data_dir / "cloud.log").is_file()
    assert summary["api"]["token"] not in (data_dir / "cloud.yaml").read_text()
