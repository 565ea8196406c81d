"""Which subjects of an extra labelled set calibrate the confidence and which report on it."""

from __future__ import annotations

from pathlib import Path

from tools.calibration import extra_set_halves
from tools.evaluation import ModelSplit


def test_a_set_the_model_trained_on_calibrates_on_its_val_and_reports_on_its_test_subjects():
    split = ModelSplit(Path("card.json"), frozenset({"a", "b", "x1"}), frozenset({"c", "x2"}), frozenset({"d", "x3"}))
    cal, report = extra_set_halves({"a", "b", "c", "d"}, split)
    assert (cal, report) == ({"c"}, {"d"})  # never its training subjects a and b


def test_a_set_the_model_never_saw_is_split_in_halves():
    split = ModelSplit(Path("card.json"), frozenset({"x1"}), frozenset({"x2"}), frozenset({"x3"}))
    subjects = {f"s{i}" for i in range(10)}
    cal, report = extra_set_halves(subjects, split)
    assert len(cal) == len(report) == 5 and cal | report == subjects and not cal & report
    assert extra_set_halves(subjects, None) == (cal, report)
