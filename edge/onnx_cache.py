"""ONNX exports of timm encoders, kept between starts.

Exporting a timm model to ONNX (and quantising it) takes seconds to minutes on a small CPU, and
it gives the same file every time for the same inputs. So the export is written once into a
cache folder (``encoder.onnx_cache_dir``, else ``$SEMCOM_CACHE_DIR/onnx``, else
``$XDG_CACHE_HOME/semcom/onnx`` or ``~/.cache/semcom/onnx``) under a key of everything that
shapes it: model name, ``model_kwargs``, the weights (the file's SHA-256, ``random-init-seed0``
or the Hugging Face cache), the runtime (quantisation), the preprocessing overrides, the ONNX
opset and the versions of torch, onnx, onnxruntime and timm. A restart opens the cached file;
a file that does not open (cut short, corrupt) is rebuilt. Files are written to a temporary
name in the same folder and renamed (``os.replace``), so a reader never sees half a file.

Also here: dynamic int8 quantisation of the MatMul/Gemm weights, with ONNX Runtime's per-tensor
INFO lines (dozens per model, logged on the root logger) kept out of the logs; its warnings
still show.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from importlib import metadata
from pathlib import Path
from typing import Final

from edge.config import TimmEncoderConfig
from edge.errors import ModelNotFound
from shared.timm_encoder import RANDOM_INIT_SEED

logger = logging.getLogger(__name__)

#: the metadata key of semcom's encoder description in an exported ONNX file
ONNX_META_KEY: Final = "semcom.encoder"
#: ONNX opset of the exports
OPSET: Final = 17
#: bump when the export itself changes (so old cache entries are not used)
FORMAT: Final = 2
_VERSIONED: Final = ("torch", "onnx", "onnxruntime", "timm")
#: the operators dynamic int8 quantisation covers
QUANTIZED_OPS: Final = ("MatMul", "Gemm")


def cache_dir(configured: Path | None = None) -> Path:
    """Where exports are kept: the config's folder, ``$SEMCOM_CACHE_DIR/onnx`` or the user's
    cache folder (``$XDG_CACHE_HOME`` or ``~/.cache``) + ``semcom/onnx``."""
    if configured is not None:
        return Path(configured).expanduser()
    if os.environ.get("SEMCOM_CACHE_DIR"):
        return Path(os.environ["SEMCOM_CACHE_DIR"]).expanduser() / "onnx"
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "semcom" / "onnx"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "absent"


def weights_id(config: TimmEncoderConfig) -> str:
    """What the weights are, for the key: random init, a file's SHA-256, or the hub cache."""
    if config.random_init:
        return f"random-init-seed{RANDOM_INIT_SEED}"
    if config.weights is not None:
        if not config.weights.is_file():
            raise ModelNotFound(
                f"encoder weights for {config.name}",
                str(config.weights),
                "Copy the weights file there or fix --encoder-weights.",
            )
        return f"sha256:{file_sha256(config.weights)}"
    return "hf-cache"


def cache_key(config: TimmEncoderConfig, runtime: str) -> str:
    """SHA-256 (hex) of everything that shapes the exported file."""
    payload = {
        "format": FORMAT,
        "name": config.name,
        "model_kwargs": config.model_kwargs,
        "weights": weights_id(config),
        "runtime": runtime,
        "preprocess": config.preprocess.model_dump(mode="json"),
        "opset": OPSET,
        "versions": {p: _version(p) for p in _VERSIONED},
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def entry_path(folder: Path, config: TimmEncoderConfig, runtime: str, key: str) -> Path:
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", config.name)
    return folder / f"{safe}-{runtime}-{key[:24]}.onnx"


def write_atomically(path: Path, write: Callable[[Path], None]) -> None:
    """``write(tmp)`` a file in ``path``'s folder, then rename it to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.stem}-", suffix=".onnx", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        with suppress(FileNotFoundError):
            tmp.unlink()


class _DropRootInfo(logging.Filter):
    """Drops records below WARNING that ONNX Runtime's quantiser logs on the root logger."""

    def filter(self, record: logging.LogRecord) -> bool:
        quantiser = f"onnxruntime{os.sep}quantization" in record.pathname
        return not (quantiser and record.levelno < logging.WARNING)


@contextmanager
def quiet_quantizer() -> Iterator[None]:
    """Keep the quantiser's INFO lines out of the logs (its warnings still show).

    ONNX Runtime's quantiser calls ``logging.info`` (the root logger) for each tensor; a filter
    on the root logger sees only records logged on it directly, and only those from the
    quantiser's files are dropped.
    """
    root = logging.getLogger()
    quiet = _DropRootInfo()
    root.addFilter(quiet)
    try:
        yield
    finally:
        root.removeFilter(quiet)


def quantizable_share(path: Path) -> float:
    """The share of an ONNX model's weights (initializer elements) that feed MatMul or Gemm:
    what :func:`quantize_onnx` turns into int8. About 1.0 for a ViT, 0 for a headless CNN."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(path)).graph
    sizes = {t.name: int(numpy_helper.to_array(t).size) for t in graph.initializer}
    fed = {i for n in graph.node if n.op_type in QUANTIZED_OPS for i in n.input if i in sizes}
    total = sum(sizes.values())
    return sum(sizes[i] for i in fed) / total if total else 0.0


def quantize_onnx(src: Path, dst: Path) -> None:
    """Dynamic int8 quantisation of an exported encoder's MatMul/Gemm weights (convolutions stay
    fp32), keeping its semcom metadata."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    meta = {p.key: p.value for p in onnx.load(str(src)).metadata_props}
    tmp = dst.with_suffix(".tmp.onnx")
    with quiet_quantizer():
        quantize_dynamic(
            str(src),
            str(tmp),
            weight_type=QuantType.QInt8,
            op_types_to_quantize=list(QUANTIZED_OPS),
        )
    model = onnx.load(str(tmp))
    for key, value in meta.items():
        if key == ONNX_META_KEY:
            info = json.loads(value)
            info["quantized"] = "int8-dynamic-matmul"
            value = json.dumps(info)
        prop = model.metadata_props.add()
        prop.key, prop.value = key, value
    onnx.save(model, str(dst))
    tmp.unlink()
