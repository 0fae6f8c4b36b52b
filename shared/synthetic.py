"""Synthetic embeddings that look like real ones, for benchmarks run without models.

Image embeddings of a fixed scene are neither uniform nor isotropic: they gather in clusters
(vehicle classes, colours, viewpoints, many near-repeats of one object along its track) and most
of their variance lies in a few dozen directions. :func:`clustered_embeddings` draws points of a
Gaussian mixture in a low-rank latent space with a power-law spectrum, embeds it in ``dim`` dims
with a random orthonormal basis, adds isotropic noise, and normalises to unit length (cosine
geometry, as the edge sends). :func:`describe` says exactly what was drawn, for reports.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from shared.vectors import F32Array


@dataclass(frozen=True)
class ClusteredSpec:
    """Parameters of :func:`clustered_embeddings`; defaults scale with ``dim``."""

    dim: int
    clusters: int = 64
    intrinsic_dim: int | None = None  # default dim // 8
    spread: float = 0.6  # within-cluster std relative to between-cluster std
    spectrum_decay: float = 0.5  # latent axis i has std ~ (i + 1) ** -decay
    noise: float = 0.15  # share of each vector's energy that is isotropic noise

    @property
    def latent_dim(self) -> int:
        return self.intrinsic_dim or max(8, self.dim // 8)


def clustered_embeddings(n: int, spec: ClusteredSpec, seed: int = 0) -> F32Array:
    """``n`` unit vectors of ``spec.dim`` dims drawn as described in the module docstring.

    The same seed and spec give the same basis and cluster centres whatever ``n`` is, so
    separate draws (seed + 1, ...) of one spec share a distribution: use ``split`` for
    train / base / query sets.
    """
    rng = np.random.default_rng(seed)
    k = spec.latent_dim
    basis, _ = np.linalg.qr(rng.standard_normal((spec.dim, k)))
    scales = (np.arange(k) + 1.0) ** -spec.spectrum_decay
    centres = rng.standard_normal((spec.clusters, k))
    weights = rng.dirichlet(np.full(spec.clusters, 2.0))
    return _draw(n, spec, basis, scales, centres, weights, np.random.default_rng(seed + 1))


def split(sizes: tuple[int, ...], spec: ClusteredSpec, seed: int = 0) -> tuple[F32Array, ...]:
    """Disjoint draws of one distribution, e.g. ``split((train, base, query), spec)``."""
    rng = np.random.default_rng(seed)
    k = spec.latent_dim
    basis, _ = np.linalg.qr(rng.standard_normal((spec.dim, k)))
    scales = (np.arange(k) + 1.0) ** -spec.spectrum_decay
    centres = rng.standard_normal((spec.clusters, k))
    weights = rng.dirichlet(np.full(spec.clusters, 2.0))
    return tuple(
        _draw(size, spec, basis, scales, centres, weights, np.random.default_rng(seed + 1 + i))
        for i, size in enumerate(sizes)
    )


def _draw(
    n: int,
    spec: ClusteredSpec,
    basis: np.ndarray,
    scales: np.ndarray,
    centres: np.ndarray,
    weights: np.ndarray,
    rng: np.random.Generator,
) -> F32Array:
    label = rng.choice(len(centres), size=n, p=weights)
    latent = centres[label] + spec.spread * rng.standard_normal((n, len(scales)))
    signal = (latent * scales) @ basis.T
    signal /= np.linalg.norm(signal, axis=1, keepdims=True)
    noise = rng.standard_normal((n, spec.dim))
    noise /= np.linalg.norm(noise, axis=1, keepdims=True)
    x = np.sqrt(1.0 - spec.noise) * signal + np.sqrt(spec.noise) * noise
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return np.asarray(x, dtype=np.float32)


def describe(spec: ClusteredSpec) -> str:
    return (
        f"synthetic: Gaussian mixture of {spec.clusters} clusters on a {spec.latent_dim}-d "
        f"subspace (power-law spectrum, decay {spec.spectrum_decay}, spread {spec.spread}) "
        f"in {spec.dim} dims, {spec.noise:.0%} isotropic noise energy, unit-normalised"
    )
