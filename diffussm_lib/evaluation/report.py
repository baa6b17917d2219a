"""What ``diffussm evaluate`` prints and writes: one report per evaluation.

``EvalReport``: FID-LeNet of MNIST-like samples (``evaluate.py``). ``FolderReport``: the Fréchet
distance on the features of a classifier trained on the dataset's own images, for an image folder
(``folder_metric.py``); it carries ``metric = "FD-classifier"`` in its dict, by which
``report_from_dict`` tells the two apart.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Optional

FOLDER_METRIC = "FD-classifier"


@dataclass
class EvalReport:
    n: int
    fid: float
    floor: Optional[float]
    class_accuracy: Optional[float]
    histogram_deviation: float

    def as_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        lines = [f"samples                  {self.n}", f"FID-LeNet vs MNIST test  {self.fid:.3f}"]
        if self.floor is not None:
            lines.append(
                f"real-vs-real floor       {self.floor:.3f}  (test vs {self.n} training images)"
            )
        if self.class_accuracy is not None:
            lines.append(f"class accuracy           {self.class_accuracy:.4f}")
        lines.append(
            f"histogram deviation      {self.histogram_deviation:.4f}  (max |class frequency - 0.1|)"
        )
        return "\n".join(lines)


@dataclass
class FolderReport(EvalReport):
    """``fid``: the Fréchet distance of the samples' classifier features to the reference half's;
    ``floor``: the same for ``floor_n`` held-out images (min(N, held-out count)); ``classifier``: the
    cached weights; ``classifier_accuracy``: their accuracy on the held-out half."""

    floor_n: int = 0
    num_classes: int = 0
    classifier_accuracy: float = 0.0
    classifier: str = ""
    metric: str = FOLDER_METRIC

    def __str__(self) -> str:
        lines = [
            f"samples                  {self.n}",
            f"{FOLDER_METRIC} vs data    {self.fid:.3f}  (Frechet distance on the features of a classifier "
            "trained on this dataset, against its reference half)",
        ]
        if self.floor is not None:
            short = (
                f"; fewer than {self.n}: the floor at N = {self.n} would be lower"
                if self.floor_n < self.n
                else ""
            )
            lines.append(
                f"real-vs-real floor       {self.floor:.3f}  ({self.floor_n} held-out images vs the "
                f"reference half{short})"
            )
        if self.class_accuracy is not None:
            lines.append(f"class accuracy           {self.class_accuracy:.4f}")
        lines.append(
            f"histogram deviation      {self.histogram_deviation:.4f}  (max |class frequency - "
            f"1/{self.num_classes}|)"
        )
        lines.append(
            f"classifier               held-out accuracy {self.classifier_accuracy:.4f}, {self.classifier}"
        )
        lines.append(
            "comparable only within this dataset and this classifier (not with FID-LeNet or other datasets)"
        )
        return "\n".join(lines)


def report_from_dict(info: dict) -> EvalReport:
    """The report a ``diffussm evaluate --json`` dict holds (extra keys, such as the checkpoint, ignored)."""
    cls = FolderReport if info.get("metric") == FOLDER_METRIC else EvalReport
    return cls(**{f.name: info[f.name] for f in fields(cls) if f.name in info})
