"""`iristrack labels-import`: annotation-tool exports (CVAT, labelme) -> a label set for eval and fine-tuning."""

from __future__ import annotations

import click


@click.command("labels-import")
@click.argument("fmt", metavar="FORMAT", type=click.Choice(["cvat", "labelme"]))
@click.argument("annotations", type=click.Path(exists=True))
@click.option(
    "--images",
    type=click.Path(file_okay=False),
    default=None,
    help="folder of the annotated images (CVAT: default the export's images/; labelme: default beside each JSON)",
)
@click.option(
    "--out", required=True, type=click.Path(file_okay=False), help="new or empty folder for images/ + ellipses.csv"
)
def labels_import(fmt, annotations, images, out) -> None:
    """Convert ANNOTATIONS (CVAT for images 1.1 XML, or a labelme JSON file or folder) into OUT.

    Shapes labelled iris and pupil become the ellipses of OUT/ellipses.csv (CVAT ellipses and polygons, labelme
    circles and polygons; a polygon is fitted with an ellipse); the images are copied unchanged to OUT/images.
    `iristrack eval OUT` scores a model on the result.
    """
    from tools.annotations import import_annotations

    report = import_annotations(fmt, annotations, out, images)
    click.echo(f"wrote {report.written} labelled images to {out}/ellipses.csv")
    if report.without_eye:
        click.echo(
            f"skipped {len(report.without_eye)} images with no iris or pupil shape (first: {report.without_eye[0]})"
        )
    if report.other_labels:
        labels = ", ".join(f"{name} ({n})" for name, n in report.other_labels.most_common())
        click.echo(f"ignored shapes of other labels: {labels}")
    if report.other_shapes:
        kinds = ", ".join(f"{name} ({n})" for name, n in report.other_shapes.most_common())
        click.echo(f"ignored iris/pupil shapes of kinds not read: {kinds}")
