"""Do frames that pass the quality gates track better? Hit rate and p95 centre error of passing vs failing frames.

`quality_split(items, tracker, profiles)` runs the tracker on every ground-truth image (no smoothing: unrelated
images), assesses each under every profile, and scores pupil and iris of the passing and the failing group
(tools.evaluation.is_hit / center_error_px). `python -m tools.quality_eval DATA` prints the table on the model
card's test subjects. A module, not an `iristrack` command: it is a measurement for the README, not a user task.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from tools.evaluation import center_error_px, is_hit, load_eval_set
from tracker.quality import Profile, QualityReport, default_profile, quality_of
from tracker.structures import Frame


@dataclass
class Group:
    """Scores of one group of images (passing or failing one profile)."""

    images: int = 0
    hits: dict[str, int] = field(default_factory=lambda: {"pupil": 0, "iris": 0})
    scored: dict[str, int] = field(default_factory=lambda: {"pupil": 0, "iris": 0})
    errors: dict[str, list[float]] = field(default_factory=lambda: {"pupil": [], "iris": []})

    def add(self, gts: dict, preds: dict) -> None:
        """One image: its ground truth and predicted ellipses per boundary."""
        self.images += 1
        for part, gt in gts.items():
            if gt is None:
                continue
            self.scored[part] += 1
            self.hits[part] += is_hit(gt, preds[part])
            if preds[part] is not None:
                self.errors[part].append(center_error_px(gt, preds[part]))

    def row(self, part: str) -> str:
        """'N images, hit x %, p95 y px' for one boundary."""
        n = self.scored[part]
        hit = f"{100 * self.hits[part] / n:.1f} %" if n else "-"
        p95 = f"{np.percentile(self.errors[part], 95):.2f} px" if self.errors[part] else "-"
        return f"hit {hit}, p95 centre error {p95}"


def quality_split(items, tracker, profiles: dict[str, Profile]) -> dict[str, dict[str, Group]]:
    """Profile name -> {"pass": Group, "fail": Group, "failed_gates": {gate: count}} over `items` (EvalItem)."""
    out = {name: {"pass": Group(), "fail": Group(), "failed_gates": {}} for name in profiles}
    for i, item in enumerate(items):
        result = tracker(Frame(item.image, i, None, item.name))
        preds = {
            "pupil": result.pupil.ellipse if result.pupil else None,
            "iris": result.iris.ellipse if result.iris else None,
        }
        gts = {"pupil": item.pupil_gt, "iris": item.iris_gt}
        for name, profile in profiles.items():
            report: QualityReport = quality_of(item.image, result, profile)
            out[name]["pass" if report.passed else "fail"].add(gts, preds)
            for gate in report.failed:
                out[name]["failed_gates"][gate] = out[name]["failed_gates"].get(gate, 0) + 1
    return out


def default_variants() -> dict[str, Profile]:
    """The default profile, without its margin gate, and without margin and trust gates (image gates only)."""
    base = default_profile()
    kept = tuple(g for g in base.gates if g.measure != "margin_adequacy_pct")
    no_margin = replace(base, name="default without margin", gates=kept)
    image_only = replace(no_margin, name="image gates only (no margin, no trust)", require_trusted=False)
    return {p.name: p for p in (base, no_margin, image_only)}


def main(data: str, model: str | None = None) -> None:
    """Print the pass/fail table for the model card's test subjects of DATA."""
    from tracker.paths import default_model_path
    from tracker.pipeline import Tracker, TrackerConfig

    card = json.loads(Path(model or default_model_path()).with_suffix(".json").read_text())
    items = load_eval_set(data, split_subjects=card["training"]["split"]["test_subjects"])
    with Tracker.from_model(model, backend="onnxruntime", config=TrackerConfig(smooth=False)) as tracker:
        table = quality_split(items, tracker, default_variants())
    print(f"{len(items)} images of {data} (test subjects of the model card)")
    for name, groups in table.items():
        print(f"\n{name}: {groups['pass'].images} pass, {groups['fail'].images} fail")
        for verdict in ("pass", "fail"):
            for part in ("pupil", "iris"):
                print(f"  {verdict} {part}: {groups[verdict].row(part)}")
        top = sorted(groups["failed_gates"].items(), key=lambda kv: -kv[1])
        print("  failed gates: " + ", ".join(f"{g} {n}" for g, n in top))


def cost(repeats: int = 200, seed: int = 11) -> dict[str, float]:
    """Milliseconds for all quality measures of one 640x480 rendered eye (iris radius 100 px): best and median."""
    import time

    import numpy as np

    from tools.synthetic import random_eye_params, render_eye
    from tracker.quality import measure
    from tracker.structures import Boundary, FrameResult, Status

    size_wh = (640, 480)
    params = replace(random_eye_params(np.random.default_rng(seed), size_wh), iris_cx=320.0, iris_cy=240.0,
                     iris_radius_px=100.0, openness=1.0)  # fmt: skip
    image, truth = render_eye(params, size_wh)
    result = FrameResult("eye", 0, None, Boundary(truth.iris, 1.0), Boundary(truth.pupil, 1.0), Status.OK, 0.0)
    times = []
    for _ in range(repeats + 5):
        t0 = time.perf_counter()
        measure(image, result)
        times.append((time.perf_counter() - t0) * 1e3)
    times = sorted(times[5:])  # the first calls compile and warm caches
    return {"best_ms": times[0], "median_ms": times[len(times) // 2]}


if __name__ == "__main__":
    if sys.argv[1:] == ["--cost"]:
        measured = cost()
        print(f"all quality measures, one 640x480 frame: best {measured['best_ms']:.3f} ms, "
              f"median {measured['median_ms']:.3f} ms")  # fmt: skip
    else:
        main(*sys.argv[1:])
