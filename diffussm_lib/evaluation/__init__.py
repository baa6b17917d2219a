"""Evaluation (notebook 07): FID-LeNet, its real-vs-real floor, class checks, comparisons, scaling.

Modules
-------
lenet       the fixed MNIST feature extractor (99.31% test accuracy, 128-d features)
fid         ``FeatureStats``, ``frechet_distance``, ``class_accuracy``, ``histogram_deviation``
report      ``EvalReport`` (FID-LeNet), ``FolderReport`` (FD-classifier), ``report_from_dict``
evaluate    ``evaluate_images``, ``sample_and_evaluate``, ``evaluate_checkpoint`` (the CLI's)
precision_recall  precision / recall, density / coverage of two feature sets (k-NN balls);
            ``evaluate_manifold`` and ``real_manifold`` (evaluate) apply them to LeNet features
folder_metric  FD-classifier for an image folder: a classifier trained (once, cached) on the folder itself
targets     the pretrained model's quality targets, ``target_check``, report fields
comparison  equal-training-time comparisons: ``train_for_budget``, ``evaluate_run``, ``ABLATIONS``
scaling     forward FLOPs and time of both backbones from 28x28 to 256x256
seeds       results over seeds (notebook 08): mean ± SD, Welch tests against the base with Holm's
            correction over a budget's comparisons, verdicts on claims
stats       Welch's and the paired two-sided t-test (``welch``, ``paired``), written out
speedrun    the CPU recipe's results over seeds (notebook 05): ``tables``, ``target_summary``
sampler_study  the sampler study (notebook 06): FID-LeNet against model evaluations, the default it supports
backbones   DiffuSSM against DiT on the CPU recipe: best rates, equal steps and time, verdicts
guidance_study  what the guidance scale trades (notebook 07): fidelity and variety over a sweep of w
"""

from .comparison import (
    ABLATIONS,
    BudgetRun,
    as_json,
    evaluate_run,
    results_table,
    train_for_budget,
    variant,
)
from .evaluate import (
    evaluate_checkpoint,
    evaluate_images,
    evaluate_manifold,
    real_floor,
    real_manifold,
    sample_and_evaluate,
)
from .folder_metric import FolderNet, dataset_classifier, evaluate_folder_images, split_halves
from .fid import FeatureStats, class_accuracy, frechet_distance, histogram_deviation
from .lenet import (
    DEFAULT_WEIGHTS,
    FEATURE_DIM,
    LeNet,
    as_classifier_input,
    classify,
    lenet_card,
    load_lenet,
    train_classifier,
    train_lenet,
)
from .precision_recall import (
    ManifoldMetrics,
    density_and_coverage,
    knn_radii,
    manifold_metrics,
    precision_and_recall,
)
from .report import EvalReport, FolderReport, report_from_dict
from .scaling import scaling_rows, scaling_table
from .targets import REPORT_FIELDS, TARGETS, missing_report_fields, target_check

__all__ = [
    "ABLATIONS",
    "BudgetRun",
    "as_json",
    "evaluate_run",
    "results_table",
    "train_for_budget",
    "variant",
    "EvalReport",
    "FolderReport",
    "report_from_dict",
    "evaluate_checkpoint",
    "evaluate_images",
    "evaluate_manifold",
    "real_floor",
    "real_manifold",
    "sample_and_evaluate",
    "FolderNet",
    "dataset_classifier",
    "evaluate_folder_images",
    "split_halves",
    "FeatureStats",
    "class_accuracy",
    "frechet_distance",
    "histogram_deviation",
    "DEFAULT_WEIGHTS",
    "FEATURE_DIM",
    "LeNet",
    "as_classifier_input",
    "classify",
    "lenet_card",
    "load_lenet",
    "train_classifier",
    "train_lenet",
    "ManifoldMetrics",
    "density_and_coverage",
    "knn_radii",
    "manifold_metrics",
    "precision_and_recall",
    "scaling_rows",
    "scaling_table",
    "REPORT_FIELDS",
    "TARGETS",
    "missing_report_fields",
    "target_check",
]
