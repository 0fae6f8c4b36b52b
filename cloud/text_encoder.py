"""The text query encoder: embeds search text with the text tower of the edges' CLIP model.

An edge running an open_clip image tower puts its crops in CLIP's joint image-text space; the
text tower of the same model (same architecture, same weights) puts a sentence in that same
space, so ``POST /v1/search {"text": ...}`` can rank crops by cosine similarity. The model is
built once, with the image query encoder (:func:`cloud.clip_encoder.open_clip_encoders`);
vectors are L2-normalised. Random-init towers (tests) say so: their space carries
``-random-init`` and every answer says ``random_init_encoder``.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from cloud.store import space_name
from shared.open_clip_encoder import encode_texts


class ClipTextEncoder:
    """Text -> unit-norm float32 vectors of one space (calls serialised, like image queries)."""

    def __init__(
        self, model: Any, tokenize: Any, name: str, dim: int, random_init: bool, lock: Any
    ) -> None:
        self.name = name
        self.dim = dim
        self.random_init = random_init
        self._model = model
        self._tokenize = tokenize
        self._lock: threading.Lock = lock

    @property
    def space(self) -> str:
        """The embedding space of the vectors (the edges' name for it)."""
        return space_name(self.name, self.dim, self.random_init)

    def embed_texts(self, texts: Sequence[str]) -> NDArray[np.float32]:
        """(n, dim) unit-norm vectors, one per text."""
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        with self._lock:
            return encode_texts(self._model, self._tokenize, texts)
