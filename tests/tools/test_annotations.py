"""Annotation exports (CVAT for images 1.1, labelme) -> label sets: round trips of known ellipses, bad exports.

Fixtures are written by the tests: images drawn with cv2, exports as the tools write them (CVAT's dumper
writes cx, cy, rx, ry with two decimals and omits rotation when it is 0; labelme writes a circle as its
centre and a point on it, a polygon as its vertices).
"""

from __future__ import annotations

import base64
import json
import math
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.paths import IRISTRACK
from tools.annotations import import_annotations, read_cvat
from tools.evaluation import load_eval_set
from tracker.errors import SourceError, TrackerError
from tracker.structures import Ellipse

CENTRE_TOL_PX = 0.01  # the brief's budget for a round trip; the files carry 1/100 px (CVAT) or more
AXIS_TOL_PX = 0.01
ANGLE_TOL_DEG = 0.1

IRIS = Ellipse(161.25, 118.5, 52.75, 47.25, math.radians(30.0))
PUPIL = Ellipse(163.0, 120.25, 19.5, 19.5, 0.0)


def assert_same(got: Ellipse | None, want: Ellipse) -> None:
    assert got is not None
    assert math.hypot(got.cx - want.cx, got.cy - want.cy) <= CENTRE_TOL_PX
    assert abs(got.semi_major - want.semi_major) <= AXIS_TOL_PX
    assert abs(got.semi_minor - want.semi_minor) <= AXIS_TOL_PX
    if want.semi_major - want.semi_minor > 0.5:  # a circle has no angle to compare
        diff = (got.angle_deg - want.angle_deg + 90.0) % 180.0 - 90.0
        assert abs(diff) <= ANGLE_TOL_DEG


def eye_image(path: Path, size_wh=(320, 240)) -> Path:
    image = np.full((size_wh[1], size_wh[0]), 200, np.uint8)
    for e, value in ((IRIS, 90), (PUPIL, 20)):
        cv2.ellipse(
            image,
            (round(e.cx), round(e.cy)),
            (round(e.semi_major), round(e.semi_minor)),
            e.angle_deg,
            0,
            360,
            value,
            -1,
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), image)
    return path


def cvat_ellipse(label: str, e: Ellipse, swap: bool = False) -> str:
    """An ellipse as CVAT dumps it; `swap` writes it the other way round (rx the minor axis, rotation + 90)."""
    rx, ry, rotation = e.semi_major, e.semi_minor, e.angle_deg
    if swap:
        rx, ry, rotation = ry, rx, (rotation + 90.0) % 360.0
    rot = f' rotation="{rotation:.2f}"' if rotation else ""  # CVAT omits a zero rotation
    return (
        f'<ellipse label="{label}" source="manual" occluded="0" cx="{e.cx:.2f}" cy="{e.cy:.2f}" '
        f'rx="{rx:.2f}" ry="{ry:.2f}"{rot} z_order="0"></ellipse>'
    )


def cvat_xml(images: list[tuple[str, int, int, str]]) -> str:
    body = "\n".join(
        f'  <image id="{i}" name="{name}" width="{w}" height="{h}">\n    {shapes}\n  </image>'
        for i, (name, w, h, shapes) in enumerate(images)
    )
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n<annotations>\n  <version>1.1</version>\n'
        "  <meta><task><name>eyes</name><mode>annotation</mode></task></meta>\n" + body + "\n</annotations>\n"
    )


def polygon_points(e: Ellipse, n: int = 40) -> list[list[float]]:
    return [[round(x, 3), round(y, 3)] for x, y in e.points(n)]


def test_cvat_ellipses_round_trip_whatever_axis_cvat_calls_rx(tmp_path):
    export = tmp_path / "export"
    eye_image(export / "images" / "s1" / "left.png")
    eye_image(export / "images" / "s2" / "left.jpg")
    tilted = Ellipse(150.0, 110.0, 40.0, 30.0, math.radians(135.0))
    shapes_1 = cvat_ellipse("iris", IRIS) + cvat_ellipse("Pupil ", PUPIL) + '<tag label="good" source="manual"></tag>'
    shapes_2 = cvat_ellipse("iris", tilted, swap=True) + cvat_ellipse("eyelid", PUPIL)
    xml = cvat_xml([("s1/left.png", 320, 240, shapes_1), ("s2/left.jpg", 320, 240, shapes_2)])
    (export / "annotations.xml").write_text(xml)
    report = import_annotations("cvat", export / "annotations.xml", tmp_path / "set")  # images/ found beside
    assert report.written == 2 and dict(report.other_labels) == {"eyelid": 1}
    items = list(load_eval_set(tmp_path / "set"))
    assert [i.name for i in items] == ["images/s1_left.png", "images/s2_left.jpg"]
    assert_same(items[0].iris_gt, IRIS)
    assert_same(items[0].pupil_gt, PUPIL)
    assert_same(items[1].iris_gt, tilted) and items[1].pupil_gt is None
    # Image files are copied byte for byte (the JPEG is the one that was annotated, not a re-encoding).
    assert (tmp_path / "set/images/s2_left.jpg").read_bytes() == (export / "images/s2/left.jpg").read_bytes()


def test_cvat_rotation_turns_from_x_towards_y_as_the_canvas_draws_it(tmp_path):
    # rotation=90 turns rx onto the image's +y axis: the major axis of a wide ellipse becomes vertical.
    xml = cvat_xml([("a.png", 100, 100, '<ellipse label="iris" cx="50" cy="50" rx="30" ry="10" rotation="90"/>')])
    e = _parse(tmp_path, xml).iris
    assert abs(e.angle_deg - 90.0) < 1e-9 and e.semi_major == 30.0
    # rotation=30 puts the point (cx + rx cos 30, cy + rx sin 30) on the ellipse: below-right of the centre (y down).
    xml = cvat_xml([("a.png", 100, 100, '<ellipse label="iris" cx="50" cy="50" rx="30" ry="10" rotation="30"/>')])
    e = _parse(tmp_path, xml).iris
    tip = (50 + 30 * math.cos(math.radians(30)), 50 + 30 * math.sin(math.radians(30)))
    assert e.contains(np.array([tip[0] * 0.999 + 50 * 0.001]), np.array([tip[1] * 0.999 + 50 * 0.001]))[0]
    assert not e.contains(np.array([tip[0]]), np.array([100 - tip[1]]))[0]


def _parse(folder: Path, xml: str):
    (folder / "annotations.xml").write_text(xml)
    return read_cvat(folder / "annotations.xml")[0]


def test_cvat_polygons_are_fitted_with_an_ellipse(tmp_path):
    eye_image(tmp_path / "images" / "a.png")
    points = ";".join(f"{x:.2f},{y:.2f}" for x, y in IRIS.points(36))
    xml = cvat_xml([("a.png", 320, 240, f'<polygon label="iris" points="{points}" z_order="0"></polygon>')])
    (tmp_path / "annotations.xml").write_text(xml)
    import_annotations("cvat", tmp_path / "annotations.xml", tmp_path / "set", images=tmp_path / "images")
    (item,) = load_eval_set(tmp_path / "set")
    assert_same(item.iris_gt, IRIS) and item.pupil_gt is None


def labelme_doc(image_path: str, shapes: list[dict], size_wh=(320, 240), image_data: str | None = None) -> str:
    return json.dumps(
        {
            "version": "5.5.0",
            "flags": {},
            "shapes": [{"group_id": None, "description": "", "flags": {}, "mask": None, **s} for s in shapes],
            "imagePath": image_path,
            "imageData": image_data,
            "imageHeight": size_wh[1],
            "imageWidth": size_wh[0],
        }
    )


def test_labelme_circles_and_polygons_round_trip(tmp_path):
    ann = tmp_path / "ann"
    eye_image(tmp_path / "img" / "e1.png")
    eye_image(tmp_path / "img" / "e2.png")
    ann.mkdir()
    on_circle = [PUPIL.cx + PUPIL.semi_major * math.cos(1.0), PUPIL.cy + PUPIL.semi_major * math.sin(1.0)]
    (ann / "e1.json").write_text(
        labelme_doc(
            "../img/e1.png",
            [
                {"label": "iris", "points": polygon_points(IRIS), "shape_type": "polygon"},
                {"label": "pupil", "points": [[PUPIL.cx, PUPIL.cy], on_circle], "shape_type": "circle"},
                {"label": "glint", "points": [[1, 1]], "shape_type": "point"},
            ],
        )
    )
    (ann / "e2.json").write_text(
        labelme_doc(
            "..\\img\\e2.png",
            [{"label": "iris", "points": [[IRIS.cx, IRIS.cy], [IRIS.cx + 50, IRIS.cy]], "shape_type": "circle"}],
        )
    )
    report = import_annotations("labelme", ann, tmp_path / "set")
    assert report.written == 2 and dict(report.other_labels) == {"glint": 1}
    e1, e2 = load_eval_set(tmp_path / "set")
    assert_same(e1.iris_gt, IRIS)
    assert_same(e1.pupil_gt, PUPIL)
    assert_same(e2.iris_gt, Ellipse.circle(IRIS.cx, IRIS.cy, 50.0)) and e2.pupil_gt is None


def test_labelme_embedded_image_data_is_used_when_the_file_is_gone(tmp_path):
    png = cv2.imencode(".png", np.full((240, 320), 128, np.uint8))[1].tobytes()
    doc = labelme_doc("gone.png", [{"label": "pupil", "points": polygon_points(PUPIL), "shape_type": "polygon"}],
                      image_data=base64.b64encode(png).decode())  # fmt: skip
    (tmp_path / "gone.json").write_text(doc)
    import_annotations("labelme", tmp_path / "gone.json", tmp_path / "set")
    assert (tmp_path / "set" / "images" / "gone.png").read_bytes() == png
    (item,) = load_eval_set(tmp_path / "set")
    assert_same(item.pupil_gt, PUPIL)


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("video", "expected a 'CVAT for images 1.1' export"),
        ("missing_image", "image 'nope.png' is neither"),
        ("two_irises", "two iris shapes on one image"),
        ("resized", "the export says 640x480 pixels, the image file is 320x240"),
        ("bad_number", "attribute cx='left' is not a number"),
        ("no_eyes", "no image has an iris or pupil shape"),
        ("not_xml", "is not XML"),
    ],
)
def test_bad_cvat_exports_are_one_clear_error_and_write_nothing(tmp_path, case, expected):
    eye_image(tmp_path / "images" / "a.png")
    iris = cvat_ellipse("iris", IRIS)
    xml = {
        "video": '<annotations><version>1.1</version><track id="0" label="iris"></track></annotations>',
        "missing_image": cvat_xml([("nope.png", 320, 240, iris)]),
        "two_irises": cvat_xml([("a.png", 320, 240, iris + iris)]),
        "resized": cvat_xml([("a.png", 640, 480, iris)]),
        "bad_number": cvat_xml([("a.png", 320, 240, '<ellipse label="iris" cx="left" cy="1" rx="1" ry="1"/>')]),
        "no_eyes": cvat_xml([("a.png", 320, 240, cvat_ellipse("eyelid", IRIS))]),
        "not_xml": "<annotations><image",
    }[case]
    (tmp_path / "annotations.xml").write_text(xml)
    with pytest.raises(SourceError, match=expected):
        import_annotations("cvat", tmp_path / "annotations.xml", tmp_path / "set")
    assert not (tmp_path / "set").exists()


def test_import_never_writes_into_an_existing_set_or_the_images_folder(tmp_path):
    eye_image(tmp_path / "images" / "a.png")
    (tmp_path / "annotations.xml").write_text(cvat_xml([("a.png", 320, 240, cvat_ellipse("iris", IRIS))]))
    import_annotations("cvat", tmp_path / "annotations.xml", tmp_path / "set")
    before = (tmp_path / "set" / "ellipses.csv").read_bytes()
    with pytest.raises(TrackerError, match="already holds ellipses.csv"):
        import_annotations("cvat", tmp_path / "annotations.xml", tmp_path / "set")
    with pytest.raises(TrackerError, match="inside the source folder"):
        import_annotations("cvat", tmp_path / "annotations.xml", tmp_path / "images" / "set")
    assert (tmp_path / "set" / "ellipses.csv").read_bytes() == before


def test_labels_import_command_writes_a_set_eval_reads(tmp_path):
    eye_image(tmp_path / "frames" / "a.png")
    (tmp_path / "task.xml").write_text(
        cvat_xml(
            [("a.png", 320, 240, cvat_ellipse("iris", IRIS) + cvat_ellipse("pupil", PUPIL)), ("b.png", 320, 240, "")]
        )
    )
    run = [*IRISTRACK, "labels-import", "cvat", "task.xml", "--images", "frames", "--out", "set"]
    proc = subprocess.run(run, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "wrote 1 labelled images to set/ellipses.csv" in proc.stdout
    assert "skipped 1 images with no iris or pupil shape (first: b.png)" in proc.stdout
    (item,) = load_eval_set(tmp_path / "set")
    assert_same(item.iris_gt, IRIS)
    proc = subprocess.run(run, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and proc.stderr.splitlines() == [
        "error: label folder set already holds ellipses.csv; a label set is never overwritten: give a new or empty "
        "folder"
    ]
