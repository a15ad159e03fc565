"""Ridge regression with standardised inputs, in numpy: small, deterministic, and stored as plain numbers."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray


@dataclass(frozen=True)
class RidgeModel:
    mean: list[float]
    scale: list[float]
    weights: list[float]
    intercept: float
    residual_sd: float  # leave-one-out error on the labelled frames: the count's error bar

    def predict(self, features: NDArray[np.float64]) -> float:
        z = (features - np.asarray(self.mean)) / np.asarray(self.scale)
        return float(z @ np.asarray(self.weights) + self.intercept)


# Penalties tried; the one with the smallest leave-one-out error is kept. Few labelled frames call for a strong
# penalty (many features, little data), hundreds for a light one: the data decides, not a constant.
STRENGTHS = (0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0, 300.0, 1000.0, 3000.0)


def fit_ridge(x: NDArray[np.float64], y: NDArray[np.float64], strengths: tuple[float, ...] = STRENGTHS) -> RidgeModel:
    if len(x) < 2:
        raise ValueError("at least two labelled frames are needed")
    mean, scale = x.mean(axis=0), x.std(axis=0) + 1e-9
    a = np.c_[(x - mean) / scale, np.ones(len(x))]
    best: tuple[float, NDArray[np.float64]] | None = None
    for strength in strengths:
        penalty = strength * np.eye(a.shape[1])
        penalty[-1, -1] = 0  # the intercept is not shrunk
        inverse = np.linalg.inv(a.T @ a + penalty)
        solution = inverse @ a.T @ y
        leverage = np.einsum("ij,jk,ik->i", a, inverse, a)  # diagonal of the hat matrix
        loo = (y - a @ solution) / np.maximum(1 - leverage, 1e-6)  # leave-one-out residuals, closed form
        score = float(np.mean(loo**2))
        if best is None or score < best[0]:
            best = (score, solution)
    assert best is not None
    loo_mse, solution = best
    return RidgeModel(
        mean=[float(v) for v in mean],
        scale=[float(v) for v in scale],
        weights=[float(v) for v in solution[:-1]],
        intercept=float(solution[-1]),
        residual_sd=float(np.sqrt(loo_mse)),
    )
