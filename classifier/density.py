"""How typical a feature vector is of a reference set: Mahalanobis distance to a Gaussian fitted to the set's
features, turned into the share of the set's own images that are farther away.

The input check uses it on its network's features; every served model uses it on its pooled features
(`model_typicality`). Fitting needs scikit-learn (training); reading and scoring need numpy only (serving).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True, eq=False)
class FeatureDensity:
    """A Gaussian of a reference set's features and the distances of a reference set to it, sorted."""

    mean: np.ndarray
    """(d,) the features' mean."""
    whitening: np.ndarray
    """(d, d): the Mahalanobis distance of `f` is the length of ``(f - mean) @ whitening``."""
    reference: np.ndarray
    """Sorted distances of the reference images (held out from the fit, or the fitted set itself)."""

    @classmethod
    def fit(cls, features: np.ndarray, reference: np.ndarray | None = None) -> FeatureDensity:
        """The Gaussian of `features` (n, d), its covariance shrunk by Ledoit and Wolf's rule (stable with
        fewer images than dimensions squared), and the distances of `reference` (default: `features`)."""
        from sklearn.covariance import LedoitWolf

        features = np.asarray(features, np.float64)
        estimate = LedoitWolf().fit(features)
        values, vectors = np.linalg.eigh(estimate.covariance_)
        whitening = vectors / np.sqrt(np.maximum(values, 1e-12 * values.max()))
        fitted = cls(estimate.location_.astype(np.float32), whitening.astype(np.float32), np.zeros(0, np.float32))
        distances = fitted.distance(features if reference is None else reference)
        return cls(fitted.mean, fitted.whitening, np.sort(distances).astype(np.float32))

    def distance(self, features: np.ndarray) -> np.ndarray:
        """Mahalanobis distances of `features` (n, d) to the Gaussian."""
        return np.linalg.norm((np.asarray(features, np.float32) - self.mean) @ self.whitening, axis=1)

    def typicality(self, features: np.ndarray) -> np.ndarray:
        """For each of `features`, the share of the reference images at least as far from the Gaussian:
        1 for the most typical, 0 beyond every reference image."""
        return share_beyond(self.reference, self.distance(features))

    def save(self, path: Path) -> Path:
        np.savez(path, mean=self.mean, whitening=self.whitening, reference=self.reference)
        return path

    @classmethod
    def load(cls, path: Path) -> FeatureDensity:
        with np.load(path) as data:
            return cls(data["mean"], data["whitening"], data["reference"])


def share_beyond(reference: np.ndarray, values: np.ndarray) -> np.ndarray:
    """For each of `values`, the share of the sorted `reference` values at least as large."""
    return 1.0 - np.searchsorted(reference, values, side="left") / max(1, len(reference))
