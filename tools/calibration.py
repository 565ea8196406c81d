"""Confidence calibration: evidence of fitted boundaries on labelled images -> a logistic model and two thresholds.

A boundary is *right* when its centre is within 5 % of the true radius (tools.evaluation.is_hit). Every
boundary reported on an image without an eye is wrong. The model is fitted on calibration sets (subjects
never used to report), its thresholds chosen there, and the reliability table is measured on held-out sets.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from tools.evaluation import center_error_px, is_hit
from tracker.fit.confidence import FEATURES, ConfidenceModel, Evidence
from tracker.fit.eye import EyeFit
from tracker.structures import Ellipse

GROSS_ERROR = 0.10  # centre off by more than this share of the true radius: grossly wrong (the measure)
RIGHT_SHARE_AT_TRUST = 0.99  # the documented promise: at or above trust_from, a boundary is right 99 % of the time
NEGATIVE_SHARE_AT_DROP = 0.01  # at most this share of images without an eye may keep any boundary
# ... on images the calibration never saw. Drop thresholds chosen to just meet it on the calibration images
# missed it on another seed (0.95 % calibration -> 1.1 % test, measured), so the choice aims lower. Lower costs
# real pupils: aiming at 0.5 % dropped pupils below 0.75 and the NIR deepvog clip kept 88 % of them; 0.75 %
# drops below 0.49 and keeps 93 %.
NEGATIVE_SHARE_CHOSEN = 0.0075
BOUNDARIES = ("iris", "pupil")
NOTHING_TRUSTED = float(np.nextafter(1.0, 2.0))  # above any confidence, even a saturated 1.0
# Every boundary the fit finds, reported with its evidence: what calibration learns from.
REPORT_ALL = ConfidenceModel(drop_below={"iris": 0.0, "pupil": 0.0}, source="report all (calibration)")


@dataclass(frozen=True, slots=True)
class Labelled:
    """One reported boundary, its evidence and whether it is right, from image `image` of set `set_name`."""

    set_name: str
    image: str
    boundary: str
    evidence: Evidence
    right: bool
    relative_error: float = float("inf")  # centre error / true semi-major axis (inf: there is no eye)


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
            relative = center_error_px(truth[k], found.ellipse) / max(truth[k].semi_major, 1e-9)
            out.append(Labelled(set_name, image, name, ev, is_hit(truth[k], found.ellipse), relative))
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
    if not ok.size:  # no threshold reaches the share: none of these boundaries may be trusted
        return NOTHING_TRUSTED if len(c) else 0.0
    # The deepest prefix that still meets the share, cut at a confidence boundary (ties all in or all out).
    for i in ok[::-1]:
        if i + 1 == len(c) or c[i + 1] < c[i]:
            return float(c[i])
    return NOTHING_TRUSTED


def _negative_keeps(drop: dict[str, float], negatives: dict[str, list[tuple[str, float]]]) -> int:
    """How many eye-free images keep a boundary at these drop thresholds ({image: [(boundary, conf), ...]})."""
    return sum(any(c >= drop[b] for b, c in found) for found in negatives.values())


def choose_drop(
    conf: np.ndarray, samples: Sequence[Labelled], negatives: dict[str, list[tuple[str, float]]], n_negative: int
) -> dict[str, float]:
    """Per-boundary drop thresholds: the most right boundaries kept, with few eye-free images keeping any.

    At most NEGATIVE_SHARE_CHOSEN of the `n_negative` eye-free images may keep a boundary; the candidates are
    just above each negative score of each boundary (a grid, small: a few dozen negatives find anything).
    """
    allowed = int(np.floor(NEGATIVE_SHARE_CHOSEN * n_negative))
    right = {
        b: np.array([c for c, s in zip(conf, samples, strict=True) if s.boundary == b and s.right]) for b in BOUNDARIES
    }
    candidates = {
        b: sorted({0.0, *(float(np.nextafter(c, 1.0)) for f in negatives.values() for k, c in f if k == b)})
        for b in BOUNDARIES
    }
    best, best_lost = {"iris": 1.0, "pupil": 1.0}, None
    for di in candidates["iris"]:
        for dp in candidates["pupil"]:
            drop = {"iris": di, "pupil": dp}
            if _negative_keeps(drop, negatives) > allowed:
                continue
            lost = int((right["iris"] < di).sum() + (right["pupil"] < dp).sum())
            if best_lost is None or lost < best_lost:
                best, best_lost = drop, lost
    return best


def calibrate(
    sets: dict[str, Sequence[Labelled]], negative_images: int, ambiguous: Sequence[str] = (), fit: dict | None = None
) -> tuple[ConfidenceModel, dict]:
    """Fit the model on all calibration sets and choose per-boundary thresholds; returns (model, what was chosen).

    `sets` maps set names to labelled boundaries; names starting with "negative" hold eye-free images, of
    which there are `negative_images` in all (those where nothing was found keep nothing at any threshold).
    Images whose name contains one of `ambiguous` (a lone dark disc: a pupil-only close-up looks the same)
    are fitted as wrong but not counted against the drop share. trust_from per boundary is the highest of the
    thresholds that make each eye set right RIGHT_SHARE_AT_TRUST of the time.
    """
    samples = [s for group in sets.values() for s in group]
    weights = fit_model(samples)
    model = ConfidenceModel(weights, source="calibrated")
    conf, right = scores(model, samples)
    trust, per_set = {}, {}
    for b in BOUNDARIES:
        ts = {}
        for name, group in sets.items():
            if name.startswith("negative"):
                continue
            c, r = scores(model, [s for s in group if s.boundary == b])
            ts[name] = trust_threshold(c, r) if len(c) else 0.0
        per_set[b], trust[b] = ts, max(ts.values())
    negatives: dict[str, list[tuple[str, float]]] = {}
    for s, c in zip(samples, conf, strict=True):
        if s.set_name.startswith("negative") and not any(a in s.image for a in ambiguous):
            negatives.setdefault(s.image, []).append((s.boundary, float(c)))
    n_ambiguous = len(
        {s.image for s in samples if s.set_name.startswith("negative") and any(a in s.image for a in ambiguous)}
    )
    eye = [(c, s) for c, s in zip(conf, samples, strict=True) if not s.set_name.startswith("negative")]
    drop = choose_drop(np.array([c for c, _ in eye]), [s for _, s in eye], negatives, negative_images - n_ambiguous)
    # Trusting below the drop threshold would report again what was dropped to keep eye-free images clean.
    trust = {b: max(trust[b], drop[b]) for b in BOUNDARIES}
    chosen = {
        "trust_from": trust,
        "trust_from_per_set": per_set,
        "drop_below": drop,
        "calibration_boundaries": len(samples),
        "calibration_negative_images": negative_images,
        "ambiguous_negative_images": n_ambiguous,
        "fit": fit or {},  # the fit settings the evidence was measured with (a run with others is not calibrated)
    }
    return ConfidenceModel(weights, drop, trust, "calibrated", chosen), chosen


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
    """What a user sees under `model`: reported / trusted boundaries and the share of wrong ones among them."""
    conf, right = scores(model, samples)
    names = np.array([s.boundary for s in samples])
    drop = np.array([model.drop_below[b] for b in names]) if len(names) else np.empty(0)
    trust = np.array([model.trust_from[b] for b in names]) if len(names) else np.empty(0)
    reported, trusted = conf >= drop, conf >= trust
    gross = np.array([s.relative_error > GROSS_ERROR for s in samples], dtype=bool)
    return {
        "found": len(samples),
        "right": int(right.sum()),
        "reported": int(reported.sum()),
        "trusted": int(trusted.sum()),
        "wrong_among_reported": float((~right[reported]).mean()) if reported.any() else None,
        "wrong_among_trusted": float((~right[trusted]).mean()) if trusted.any() else None,
        "gross_among_found": float(gross.mean()) if len(gross) else None,
        "gross_among_reported": float(gross[reported].mean()) if reported.any() else None,
        "gross_among_trusted": float(gross[trusted].mean()) if trusted.any() else None,
        "right_dropped": int((right & ~reported).sum()),
    }


def plot_reliability(tables: dict[str, list[dict]], trust_from: dict[str, float], path) -> None:
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
    for (name, t), style in zip(trust_from.items(), ("--", ":"), strict=False):
        ax.axvline(t, color="k", ls=style, lw=1, label=f"{name} trusted from {t:.2f}")
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
    "choose_drop",
    "label_fit",
    "outcome",
    "plot_reliability",
    "reliability",
    "trust_threshold",
]


# --- collecting from images ------------------------------------------------------------------------------

AMBIGUOUS_KINDS = ("dark_disc",)  # a lone dark disc is what a pupil-only close-up looks like: never ok, not dropped


def collect(tracker, set_name: str, items) -> tuple[list[Labelled], int]:
    """Run `tracker`'s steps on (name, image, truth) items with REPORT_ALL; (labelled boundaries, images read).

    truth is (iris, pupil) ellipses, or None for an image without an eye.
    """
    from tracker.fit.eye import fit_eye
    from tracker.structures import Frame

    buffer = tracker.input_buffers(1)[0]
    out, n = [], 0
    for name, image, truth in items:
        prepared = tracker.prepare(Frame(image, 0, None), buffer)
        if not prepared.usable:
            continue
        n += 1
        edges = tracker.infer(buffer)[0]
        fit = fit_eye(edges, prepared.gray.shape[:2], tracker.config.fit, prepared.gray, REPORT_ALL)
        out += label_fit(set_name, name, fit, truth)
    return out, n


def subject_halves(subjects: Iterable[str], salt: str = "calibration") -> tuple[set[str], set[str]]:
    """Split subjects in two halves by a salted hash: stable, and independent of file order."""
    import hashlib

    order = sorted(set(subjects), key=lambda s: hashlib.sha256(f"{salt}:{s}".encode()).hexdigest())
    return set(order[: len(order) // 2]), set(order[len(order) // 2 :])


def extra_set_halves(subjects: Iterable[str], split) -> tuple[set[str], set[str]]:
    """(calibration, report) subjects of an extra labelled set: the card's val / test ones, else hash halves.

    A set the model trained on must not calibrate on its train subjects: the confidence would over-trust.
    """
    subjects = set(subjects)
    if split is not None and subjects & split.listed:
        return subjects & (split.val or set()), subjects & (split.test or set())
    return subject_halves(subjects)


def negative_outcome(model: ConfidenceModel, samples: Sequence[Labelled], n_images: int, ambiguous=()) -> dict:
    """Eye-free images: how many keep any boundary, and how many would be `ok` (both boundaries trusted)."""
    per_image: dict[str, dict[str, float]] = {}
    for s in samples:
        per_image.setdefault(s.image, {})[s.boundary] = model(s.boundary, s.evidence)

    def kept(found):
        return any(c >= model.drop_below[b] for b, c in found.items())

    def ok(found):
        return len(found) == 2 and all(c >= model.trust_from[b] for b, c in found.items())

    def any_trusted(found):
        return any(c >= model.trust_from[b] for b, c in found.items())

    plain = {k: v for k, v in per_image.items() if not any(a in k for a in ambiguous)}
    n_ambiguous = sum(any(a in k for a in ambiguous) for k in per_image)
    return {
        "images": n_images,
        "images_with_any_boundary": sum(map(kept, per_image.values())),
        "images_with_any_boundary_not_ambiguous": sum(map(kept, plain.values())),
        "ambiguous_images_found": n_ambiguous,
        "images_ok": sum(map(ok, per_image.values())),
        "images_with_a_trusted_boundary": sum(map(any_trusted, per_image.values())),
        "kept": sorted(k for k, v in per_image.items() if kept(v)),
    }


def report(model: ConfidenceModel, sets: dict[str, Sequence[Labelled]], counts: dict[str, int], ambiguous=()) -> dict:
    """Reliability tables and outcomes of every set (calibration and held-out), per boundary."""
    out = {"reliability": {}, "outcome": {}, "negatives": {}}
    for name, samples in sets.items():
        if name.startswith("negative"):
            out["negatives"][name] = negative_outcome(model, samples, counts[name], ambiguous)
            continue
        out["reliability"][name] = reliability(model, samples)
        out["outcome"][name] = {b: outcome(model, [s for s in samples if s.boundary == b]) for b in BOUNDARIES}
    return out


def _pct(x) -> str:
    return "–" if x is None else f"{100 * x:.1f} %"


def report_markdown(model: ConfidenceModel, rep: dict) -> str:
    """The report as Markdown tables (what the README quotes)."""
    lines = [
        f"thresholds: iris reported from {model.drop_below['iris']:.3f}, trusted from {model.trust_from['iris']:.3f}; "
        f"pupil reported from {model.drop_below['pupil']:.3f}, trusted from {model.trust_from['pupil']:.3f}",
        "",
        "| set | boundary | found | right | reported | wrong among reported | trusted | wrong among trusted "
        "| gross among reported | gross among trusted | right dropped |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, per in rep["outcome"].items():
        for b, o in per.items():
            lines.append(
                f"| {name} | {b} | {o['found']} | {o['right']} | {o['reported']} | {_pct(o['wrong_among_reported'])} "
                f"| {o['trusted']} | {_pct(o['wrong_among_trusted'])} | {_pct(o['gross_among_reported'])} "
                f"| {_pct(o['gross_among_trusted'])} | {o['right_dropped']} |"
            )
    lines += [
        "",
        "| eye-free set | images | with any boundary | of them not a lone dark disc | ok |",
        "|---|---|---|---|---|",
    ]
    for name, o in rep["negatives"].items():
        lines.append(
            f"| {name} | {o['images']} | {o['images_with_any_boundary']} "
            f"| {o['images_with_any_boundary_not_ambiguous']} | {o['images_ok']} |"
        )
    for name, rows in rep["reliability"].items():
        lines += [
            "",
            f"reliability, {name}:",
            "",
            "| confidence | boundaries | mean confidence | share right |",
            "|---|---|---|---|",
        ]
        for r in rows:
            if r["boundaries"]:
                lines.append(
                    f"| {r['bin']} | {r['boundaries']} | {r['mean_confidence']:.3f} | {_pct(r['right_share'])} |"
                )
    return "\n".join(lines)
