"""What a TensorRT engine needs of the machine: an NVIDIA GPU that PyTorch sees (CUDA) and the
``tensorrt`` Python package (on a Jetson both come with JetPack and NVIDIA's PyTorch wheel).

A TensorRT engine is built for one GPU and TensorRT version: it is built on the machine that
runs it (``semcom edge export --format engine`` on the Jetson) and runs nowhere else.
"""

from __future__ import annotations

import importlib.util

#: the hint given with every "TensorRT is not usable here" error
ON_THE_JETSON = (
    "TensorRT engines are built and run on the Jetson itself (JetPack 6: CUDA, TensorRT and "
    'NVIDIA\'s PyTorch wheel; deploy/README.md "Jetson acceleration")'
)


def tensorrt_missing() -> str | None:
    """What this machine lacks to build or run a TensorRT engine, in words; None: nothing."""
    missing = []
    if importlib.util.find_spec("tensorrt") is None:
        missing.append("TensorRT (the `tensorrt` Python package is not installed)")
    try:
        import torch

        cuda = bool(torch.cuda.is_available())
    except ImportError:
        cuda = False
    if not cuda:
        missing.append("a CUDA GPU (torch.cuda.is_available() is False)")
    return " and ".join(missing) or None
