"""How far to trust a fitted boundary: its evidence (features) -> a confidence, calibrated where the model has one.

A calibrated confidence is the probability that the boundary is right (centre within 5 % of the true radius),
fitted offline by `iristrack calibrate` as a logistic model of the evidence on held-out labelled images and
images without an eye, and stored beside the model (MODEL.confidence.json). Two thresholds come with it:
below `drop_below` a boundary is not reported at all (what an image without an eye scores), below
`trust_from` it is reported with the frame status low_confidence, never ok.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from tracker.errors import ModelError


@dataclass(frozen=True, slots=True)
class Evidence:
    """What supports one fitted boundary: the features its confidence is computed from (fractions in [0, 1])."""

    strength: float  # mean edge probability of the inliers
    inlier_fraction: float  # inliers / ridge points of the channel
    coverage: float  # fraction of 36 sectors around the ellipse holding inliers
    rms_tol: float  # RMS distance of the inliers / the inlier tolerance
    partner: float  # support of the other boundary of the eye (its strength x sqrt(share) x coverage), 0 if none
    centre_offset: float  # pupil-iris centre distance / iris semi-major (0 without a partner)
    shape_gap: float  # axis-ratio / orientation disagreement with the partner (0 without one)
    constrained: bool  # iris fitted with the pupil's shape (or as a circle): only side arcs were visible
    contrast: float = 0.0  # the image's median dark-inside/bright-outside step across the boundary, in frame spreads
    # log2 of the semi-major axis in model pixels: the network localises to about a model pixel, so a boundary
    # a few model pixels across cannot be within 5 % of its radius however clean it looks.
    size_model_px: float = 0.0

    def as_vector(self) -> tuple[float, ...]:
        """The features in a fixed order (FEATURES), for the confidence model."""
        return (
            self.strength,
            self.inlier_fraction,
            self.coverage,
            self.rms_tol,
            self.partner,
            self.centre_offset,
            self.shape_gap,
            float(self.constrained),
            self.contrast,
            self.size_model_px,
        )


FEATURES = (
    "strength",
    "inlier_fraction",
    "coverage",
    "rms_tol",
    "partner",
    "centre_offset",
    "shape_gap",
    "constrained",
    "contrast",
    "size_model_px",
)


@dataclass(frozen=True)
class ConfidenceModel:
    """Evidence -> confidence in [0, 1]: logistic per boundary ("iris", "pupil"), or the uncalibrated heuristic.

    `weights[name]` is (intercept, one coefficient per FEATURES entry); without weights the heuristic is used:
    edge strength x sqrt(inlier share) x perimeter coverage (up to 0.7), as before calibration existed.
    Thresholds are per boundary: a pupil is right far more often than an iris at the same evidence.
    """

    weights: dict[str, tuple[float, ...]] = field(default_factory=dict)
    drop_below: dict[str, float] = field(default_factory=lambda: {"iris": 0.15, "pupil": 0.15})
    trust_from: dict[str, float] = field(default_factory=lambda: {"iris": 0.0, "pupil": 0.0})
    source: str = "uncalibrated"
    measured: dict = field(default_factory=dict, compare=False)  # what calibration measured (written, not read)

    def __call__(self, name: str, evidence: Evidence) -> float:
        """Confidence of boundary `name` given its evidence."""
        w = self.weights.get(name)
        if w is None:
            return max(
                0.0, min(1.0, evidence.strength * evidence.inlier_fraction**0.5 * min(1.0, evidence.coverage / 0.7))
            )
        z = w[0] + sum(wi * xi for wi, xi in zip(w[1:], evidence.as_vector(), strict=True))
        return 1.0 / (1.0 + math.exp(-max(-50.0, min(50.0, z))))

    def to_json(self) -> str:
        """The model as JSON (the file `iristrack calibrate` writes)."""
        return json.dumps(
            {
                "features": list(FEATURES),
                "weights": {k: list(v) for k, v in self.weights.items()},
                "drop_below": self.drop_below,
                "trust_from": self.trust_from,
                **({"measured": self.measured} if self.measured else {}),
            },
            indent=1,
        )

    @classmethod
    def load(cls, path: str | Path) -> ConfidenceModel:
        """Read a calibration file; ModelError when it does not match this version's features."""
        path = Path(path)
        try:
            doc = json.loads(path.read_text())
            if tuple(doc["features"]) != FEATURES:
                raise ValueError(f"features {doc['features']} are not {list(FEATURES)}")
            weights = {k: tuple(float(x) for x in v) for k, v in doc["weights"].items()}
            if any(len(v) != len(FEATURES) + 1 for v in weights.values()):
                raise ValueError("each weight vector needs an intercept and one coefficient per feature")
            drop = {k: float(doc["drop_below"][k]) for k in ("iris", "pupil")}
            trust = {k: float(doc["trust_from"][k]) for k in ("iris", "pupil")}
            return cls(weights, drop, trust, str(path), dict(doc.get("measured") or {}))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ModelError(f"cannot read the confidence calibration {path}: {exc}") from None


DEFAULT_CONFIDENCE = ConfidenceModel()


def calibration_path(model_path: str | Path) -> Path:
    """Where a model's calibration lives: model.onnx -> model.confidence.json."""
    return Path(model_path).with_suffix(".confidence.json")


def confidence_for(model_path: str | Path | None) -> ConfidenceModel:
    """The calibrated model beside `model_path` when there is one, else the uncalibrated heuristic."""
    if model_path is None:
        return DEFAULT_CONFIDENCE
    path = calibration_path(model_path)
    return ConfidenceModel.load(path) if path.is_file() else DEFAULT_CONFIDENCE
