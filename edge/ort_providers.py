"""ONNX Runtime execution providers of the encoder: TensorRT, CUDA or the CPU.

The config names providers by short names (``encoder.providers: [tensorrt, cuda, cpu]``, or
``auto`` for those three), in order of preference. :func:`select_providers` maps them to ONNX
Runtime's ids and options and keeps those this onnxruntime build has; :func:`open_session` is
the one place an encoder's ``InferenceSession`` is created. When a provider asked for is not
there (the CPU-only ``onnxruntime`` wheel has neither TensorRT nor CUDA) or does not start, the
encoder runs on the next one, down to the CPU, and one warning says what was asked and what
runs.

TensorRT builds an engine for the model on the first start (minutes on a Jetson); it is kept
in ``encoder.trt_cache_dir`` (default ``$SEMCOM_CACHE_DIR/tensorrt``, else
``~/.cache/semcom/tensorrt``), in a folder per ONNX file (its path, size and modification time)
and precision, because ONNX Runtime's own cache key does not cover the weights.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

logger = logging.getLogger(__name__)

#: short provider names -> ONNX Runtime provider ids
PROVIDER_IDS: Final = {
    "tensorrt": "TensorrtExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "cpu": "CPUExecutionProvider",
}
#: what ``auto`` stands for
AUTO: Final = ("tensorrt", "cuda", "cpu")
_LABELS: Final = {"tensorrt": "TensorRT", "cuda": "CUDA", "cpu": "CPU"}
_NAMES_BY_ID: Final = {v: k for k, v in PROVIDER_IDS.items()}


def parse_providers(value: object) -> tuple[str, ...]:
    """``encoder.providers`` as short names: a list or a comma-separated string of ``tensorrt``,
    ``cuda``, ``cpu`` (or their ONNX Runtime ids), or ``auto`` (= tensorrt, cuda, cpu).

    Raises :class:`ValueError` naming the unknown entry and the accepted ones.
    """
    items = [v.strip() for v in value.split(",")] if isinstance(value, str) else value
    if not isinstance(items, list | tuple) or not items:
        raise ValueError("give a list of providers, e.g. [tensorrt, cuda, cpu], or auto")
    names: list[str] = []
    for item in items:
        text = str(item).strip()
        name = _NAMES_BY_ID.get(text, text.lower())
        if name == "auto":
            expanded: tuple[str, ...] = AUTO
        elif name in PROVIDER_IDS:
            expanded = (name,)
        else:
            raise ValueError(
                f"unknown execution provider {text!r}: use tensorrt, cuda, cpu (in order of "
                "preference) or auto (= tensorrt, cuda, cpu)"
            )
        names.extend(n for n in expanded if n not in names)
    return tuple(names)


def wants_gpu(names: Sequence[str]) -> bool:
    """Whether a GPU provider is asked for (ahead of the CPU)."""
    return bool(names) and names[0] != "cpu"


def provider_options(name: str, *, fp16: bool, engine_cache: Path | None) -> dict[str, str]:
    """ONNX Runtime options of one provider (short name): TensorRT builds fp16 engines when
    ``fp16`` and keeps them in ``engine_cache``; CUDA and the CPU run the file's own precision.
    """
    if name == "tensorrt":
        options = {"trt_fp16_enable": "True" if fp16 else "False"}
        if engine_cache is not None:
            options |= {
                "trt_engine_cache_enable": "True",
                "trt_engine_cache_path": str(engine_cache),
                "trt_timing_cache_enable": "True",
                "trt_timing_cache_path": str(engine_cache),
            }
        return options
    if name == "cuda":
        return {"device_id": "0"}
    if name == "cpu":
        return {}
    raise ValueError(f"unknown execution provider {name!r}")


def trt_cache_root(configured: Path | None = None) -> Path:
    """The TensorRT engine cache: the config's folder, else ``tensorrt`` beside the ONNX cache
    (``$SEMCOM_CACHE_DIR/tensorrt`` or ``~/.cache/semcom/tensorrt``)."""
    from edge.onnx_cache import cache_dir  # not at import: the config module imports this one

    if configured is not None:
        return Path(configured).expanduser()
    return cache_dir().parent / "tensorrt"


def engine_cache_dir(root: Path, model: Path, fp16: bool) -> Path:
    """The engine folder of one ONNX file and precision: a new file (re-exported weights at the
    same path) gets a new folder, so a stale engine is never loaded."""
    stat = model.stat()
    stamp = f"{model.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    key = hashlib.sha256(stamp.encode()).hexdigest()[:16]
    return root / f"{model.stem}-{key}-{'fp16' if fp16 else 'fp32'}"


@dataclass(frozen=True, slots=True)
class Selection:
    """Which providers were asked for and which of them this build has, with their options."""

    requested: tuple[str, ...]
    used: tuple[str, ...]
    options: tuple[tuple[str, dict[str, str]], ...]  # (ONNX Runtime id, options) to pass


def select_providers(
    requested: Sequence[str],
    available: Sequence[str],
    *,
    fp16: bool = False,
    engine_cache: Path | None = None,
) -> Selection:
    """The requested providers this onnxruntime build has (``available``: its
    ``get_available_providers()``), in the requested order; the CPU when none is left."""
    used = tuple(n for n in requested if PROVIDER_IDS[n] in available) or ("cpu",)
    options = tuple(
        (PROVIDER_IDS[n], provider_options(n, fp16=fp16, engine_cache=engine_cache)) for n in used
    )
    return Selection(tuple(requested), used, options)


def _join(names: Sequence[str]) -> str:
    labels = [_LABELS[n] for n in names]
    return labels[0] if len(labels) == 1 else f"{', '.join(labels[:-1])} and {labels[-1]}"


def describe(names: Sequence[str], fp16: bool) -> str:
    """``TensorRT (fp16)``, ``CUDA``, ``CPU``: the provider that runs the model first."""
    first = names[0] if names else "cpu"
    return _LABELS[first] + (" (fp16)" if fp16 and first == "tensorrt" else "")


def fallback_warning(
    selection: Selection, running: Sequence[str], *, fp16: bool = False
) -> str | None:
    """The one warning when the encoder does not run on the first provider asked for: what was
    asked, why the ones ahead are not used (absent from this build, or did not start), and what
    runs. None when it runs on the first one."""
    first = running[0] if running else "cpu"
    requested = selection.requested
    if first == requested[0]:
        return None
    ahead = requested[: requested.index(first)] if first in requested else requested
    absent = [n for n in ahead if n not in selection.used]
    failed = [n for n in ahead if n in selection.used]
    reasons = []
    if absent:
        plural = "provider is" if len(absent) == 1 else "providers are"
        reasons.append(
            f"{_join(absent)} {plural} not available in this onnxruntime build (install "
            'onnxruntime-gpu for JetPack, deploy/README.md "Jetson acceleration")'
        )
    if failed:
        reasons.append(f"{_join(failed)} did not start (see onnxruntime's error above)")
    return (
        f"encoder providers [{', '.join(requested)}] asked for: {'; '.join(reasons)}: running "
        f"the encoder on {'the CPU' if first == 'cpu' else describe(running, fp16)}"
    )


def open_session(
    path: Path,
    requested: Sequence[str],
    *,
    fp16: bool = False,
    trt_cache_dir: Path | None = None,
    threads: int = 1,
) -> tuple[Any, tuple[str, ...]]:
    """An ONNX Runtime session of ``path`` on the first requested provider that this build has
    and that starts, and the short names of the providers it runs on (first: the main one).

    Logs one warning (:func:`fallback_warning`) when that is not the first one requested.
    """
    import onnxruntime as ort

    available = ort.get_available_providers()
    engine_cache = None
    if "tensorrt" in requested and PROVIDER_IDS["tensorrt"] in available:
        engine_cache = engine_cache_dir(trt_cache_root(trt_cache_dir), path, fp16)
        engine_cache.mkdir(parents=True, exist_ok=True)
    selection = select_providers(requested, available, fp16=fp16, engine_cache=engine_cache)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(
        str(path),
        options,
        providers=[pid for pid, _ in selection.options],
        provider_options=[opts for _, opts in selection.options],
    )
    running = tuple(_NAMES_BY_ID[p] for p in session.get_providers() if p in _NAMES_BY_ID)
    running = running or ("cpu",)
    warning = fallback_warning(selection, running, fp16=fp16)
    if warning is not None:
        logger.warning(warning)
    return session, running
