"""Confidence calibration: evidence of fitted boundaries on labelled images -> a logistic model and two thresholds.

A boundary is *right* when its centre is within 5 % of the true radius (tools.evaluation.is_hit). Every
boundary reported on an image without an eye is wrong. The model is fitted on calibration sets (subjects
never used to report), its thresholds chosen there, and the reliability table is measured on held-out sets.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from tools.evaluation import is_hit
from tracker.fit.confidence import FEATURES, ConfidenceModel, Evidence
from tracker.fit.eye import EyeFit
from tracker.structures import Ellipse

RIGHT_SHARE_AT_TRUST = 0.99  # the documented promise: at or above trust_from, a boundary is right 99 % of the time
NEGATIVE_SHARE_AT_DROP = 0.01  # at most this share of images without an eye may keep any boundary
BOUNDARIES = ("iris", "pupil")
# Every boundary the fit finds, reported with its evidence: what calibration learns from.
REPORT_ALL = ConfidenceModel(drop_below=0.0, trust_from=0.0, source="report all (calibration)")


@dataclass(frozen=True, slots=True)
class Labelled:
    """One reported boundary, its evidence and whether it is right, from image `image` of set `set_name`."""

    set_name: str
    image: str
    boundary: str
    evidence: Evidence
    right: bool


def label_fit(
    set_name: str, image: str, fit: EyeFit, truth: tuple[Ellipse | None, Ellipse | None] | None
) -> list[Labelled]:
    """The boundaries of one fit (made with REPORT_ALL) labelled against the truth; truth None: no eye at all.

    A boundary whose truth is absent on an eye image (a pupil the annotator could not see) is not scored.
    """
    out = []
    for k, name in enumerate(BOUNDARIES):
        found, ev = (fit.iris, fit.iris_evidence) if name == "iris" else (fit.pupil, fit.pupil_evidence)
        if found is None or ev is None:
            continue
        if truth is None:
            out.append(Labelled(set_name, image, name, ev, False))
        elif truth[k] is not None:
            out.append(Labelled(set_name, image, name, ev, is_hit(truth[k], found.ellipse)))
    return out


def fit_model(samples: Sequence[Labelled]) -> dict[str, tuple[float, ...]]:
    """Logistic regression of `right` on the evidence, one per boundary: {name: (intercept, *coefficients)}."""
    from sklearn.linear_model import LogisticRegression

    weights = {}
    for name in BOUNDARIES:
        rows = [s for s in samples if s.boundary == name]
        x = np.array([s.evidence.as_vector() for s in rows])
        y = np.array([s.right for s in rows])
        # Mild L2 (C=1) on unscaled features in [0, ~2]: enough to keep the rare flags from running away.
        model = LogisticRegression(C=1.0, max_iter=2000).fit(x, y)
        weights[name] = (float(model.intercept_[0]), *map(float, model.coef_[0]))
    return weights


def scores(model: ConfidenceModel, samples: Iterable[Labelled]) -> tuple[np.ndarray, np.ndarray]:
    """(confidences, right) arrays for the samples under `model`."""
    samples = list(samples)
    conf = np.array([model(s.boundary, s.evidence) for s in samples])
    return conf, np.array([s.right for s in samples], dtype=bool)


def trust_threshold(conf: np.ndarray, right: np.ndarray, share: float = RIGHT_SHARE_AT_TRUST) -> float:
    """The lowest confidence t at which the boundaries scoring >= t are right at least `share` of the time."""
    order = np.argsort(-conf)
    c, r = conf[order], right[order]
    precision = np.cumsum(r) / np.arange(1, len(r) + 1)
    ok = np.flatnonzero(precision >= share)
    if not ok.size:
        return 1.0
    # The deepest prefix that still meets the share, cut at a confidence boundary (ties all in or all out).
    for i in ok[::-1]:
        if i + 1 == len(c) or c[i + 1] < c[i]:
            return float(c[i])
    return 1.0


def drop_threshold(negative_max_conf: np.ndarray, share: float = NEGATIVE_SHARE_AT_DROP) -> float:
    """The confidence below which boundaries are dropped so that at most `share` of eye-free images keep one."""
    if not len(negative_max_conf):
        return 0.0
    keep = int(np.floor(share * len(negative_max_conf)))
    ordered = np.sort(negative_max_conf)[::-1]
    # Strictly above the (keep+1)-th highest score: at most `keep` images keep a boundary.
    return float(np.nextafter(ordered[keep], 1.0)) if keep < len(ordered) else 0.0


def calibrate(fit_samples: Sequence[Labelled], negative_images: int) -> tuple[ConfidenceModel, dict]:
    """Fit the model and choose both thresholds on calibration samples; returns (model, what was chosen).

    `negative_images` counts the eye-free images behind the samples of sets named "negative*", including
    those where nothing was found (they keep no boundary at any threshold).
    """
    weights = fit_model(fit_samples)
    model = ConfidenceModel(weights, drop_below=0.0, trust_from=0.0, source="calibrated")
    conf, right = scores(model, fit_samples)
    trust = trust_threshold(conf, right)
    per_image: dict[str, float] = {}
    for s, c in zip(fit_samples, conf, strict=True):
        if s.set_name.startswith("negative"):
            per_image[s.image] = max(per_image.get(s.image, 0.0), float(c))
    negative_max = np.array([*per_image.values(), *[0.0] * max(0, negative_images - len(per_image))])
    drop = min(drop_threshold(negative_max), trust)
    chosen = {
        "trust_from": trust,
        "drop_below": drop,
        "calibration_boundaries": len(fit_samples),
        "calibration_negative_images": negative_images,
    }
    return ConfidenceModel(weights, drop_below=drop, trust_from=trust, source="calibrated"), chosen


BINS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0)


def reliability(model: ConfidenceModel, samples: Sequence[Labelled], bins: Sequence[float] = BINS) -> list[dict]:
    """Per confidence bin: boundaries, mean confidence and the share right (the reliability table)."""
    conf, right = scores(model, samples)
    rows = []
    for lo, hi in zip(bins[:-1], bins[1:], strict=True):
        inside = (conf >= lo) & ((conf < hi) if hi < 1.0 else (conf <= hi))
        n = int(inside.sum())
        rows.append(
            {
                "bin": f"{lo:.2f}-{hi:.2f}",
                "boundaries": n,
                "mean_confidence": float(conf[inside].mean()) if n else None,
                "right_share": float(right[inside].mean()) if n else None,
            }
        )
    return rows


def outcome(model: ConfidenceModel, samples: Sequence[Labelled]) -> dict:
    """What a user sees under `model`: reported / trusted boundaries and the share of gross errors among them."""
    conf, right = scores(model, samples)
    reported, trusted = conf >= model.drop_below, conf >= model.trust_from
    return {
        "boundaries_found": len(samples),
        "reported": int(reported.sum()),
        "trusted": int(trusted.sum()),
        "wrong_among_reported": float((~right[reported]).mean()) if reported.any() else None,
        "wrong_among_trusted": float((~right[trusted]).mean()) if trusted.any() else None,
        "right_lost_by_dropping": int((right & ~reported).sum()),
    }


def plot_reliability(tables: dict[str, list[dict]], trust_from: float, path) -> None:
    """Reliability diagram (share right vs mean confidence per bin) of each set, with the trust threshold, as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 5))
    ax.plot([0, 1], [0, 1], color="0.7", lw=1, label="perfectly calibrated")
    for name, rows in tables.items():
        pts = [(r["mean_confidence"], r["right_share"], r["boundaries"]) for r in rows if r["boundaries"]]
        xs, ys, ns = zip(*pts, strict=True) if pts else ((), (), ())
        ax.plot(xs, ys, marker="o", label=name)
        for x, y, n in pts:
            ax.annotate(str(n), (x, y), textcoords="offset points", xytext=(3, -10), fontsize=7)
    ax.axvline(trust_from, color="k", ls="--", lw=1, label=f"default threshold {trust_from:.2f}")
    ax.set_xlabel("confidence (mean in bin)")
    ax.set_ylabel("share within 5 % of the true radius")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.legend(loc="upper left", fontsize=8)
    ax.set_title("iristrack: reliability of reported boundaries")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


__all__ = [
    "FEATURES",
    "REPORT_ALL",
    "Labelled",
    "calibrate",
    "drop_threshold",
    "label_fit",
    "outcome",
    "plot_reliability",
    "reliability",
    "trust_threshold",
]
