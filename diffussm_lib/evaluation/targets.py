"""The course's quality targets for its pretrained MNIST model, and checks of evaluation reports.

A report is ``EvalReport.as_dict()`` or what ``diffussm evaluate --json`` writes.
"""

from __future__ import annotations

from typing import List, Sequence

# FID-LeNet at N = 10,000 samples, class accuracy of class-conditional samples, the predicted-class histogram.
TARGETS = {"n": 10_000, "fid": 5.0, "class_accuracy": 0.97, "histogram_deviation": 0.02}
REPORT_FIELDS = (
    "n",
    "fid",
    "histogram_deviation",
)  # what every report has (class_accuracy: None if unconditional)


def missing_report_fields(report: dict, also: Sequence[str] = ()) -> List[str]:
    """The fields of ``REPORT_FIELDS`` (and ``also``) that ``report`` lacks or holds as None."""
    return [k for k in (*REPORT_FIELDS, *also) if report.get(k) is None]


def target_check(report: dict, targets: dict = TARGETS) -> dict:
    """Which of the ``targets`` a report (``EvalReport.as_dict()`` or ``diffussm evaluate --json``) meets.

    Returns {"n": bool, "fid": bool, "class_accuracy": bool, "histogram_deviation": bool, "all": bool}:
    n at least the target's N (FID is biased upwards at small N, so a smaller N cannot count), FID and
    histogram deviation at most, class accuracy at least their targets (unconditional reports fail it).
    """
    missing = missing_report_fields(report)
    if missing:
        raise ValueError(f"evaluation report lacks {missing}: expected the fields of EvalReport")
    acc = report.get("class_accuracy")
    ok = {
        "n": report["n"] >= targets["n"],
        "fid": report["fid"] <= targets["fid"],
        "class_accuracy": acc is not None and acc >= targets["class_accuracy"],
        "histogram_deviation": report["histogram_deviation"] <= targets["histogram_deviation"],
    }
    ok["all"] = all(ok.values())
    return ok
