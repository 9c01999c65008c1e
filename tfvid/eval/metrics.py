"""Classification metrics and score files (numpy only; no TensorFlow import).

Conventions
    labels  int (N,)          class index per video; -1 (tfvid.data.schema.NO_LABEL) marks an
                              unlabeled video: kept in score files, excluded from every metric.
    logits  float (N, C)      unnormalised video scores (the multi-view average of the model's
                              logits); softmax is monotonic, so ranks and accuracies do not need it.
    class_names  list of C str

Measures
    top-k accuracy        fraction of labeled videos whose label is among the k highest scores
                          (ties broken by the lower class index, as a stable sort does).
    per-class accuracy    recall of each class: correct / support; NaN for classes with no video.
    mean class accuracy   mean of per-class accuracy over the classes present in the labels
                          (the UCF101/HMDB51 measure of the TSN and DIN papers); absent classes
                          are excluded from the mean and listed by `summarize`.
    confusion matrix      (C, C) counts, rows = true class, columns = predicted (top-1) class.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Sequence

import numpy as np

from tfvid.atomic import atomic_path

NO_LABEL = -1


@dataclasses.dataclass
class Scores:
    """Video-level scores of one model (or one fused set of streams).

    ids: str (N,); labels: int64 (N,) with -1 for unlabeled videos; logits: float32 (N, C);
    class_names: list of C names or None when unknown.
    """
    ids: np.ndarray
    labels: np.ndarray
    logits: np.ndarray
    class_names: list[str] | None = None

    def __post_init__(self):
        self.ids = np.asarray(self.ids).astype(str)
        self.labels = np.asarray(self.labels, dtype=np.int64).reshape(-1)
        self.logits = np.asarray(self.logits, dtype=np.float32)
        if self.logits.ndim != 2:
            raise ValueError(f"Scores.logits must be (N, classes), got shape {self.logits.shape}")
        n = self.logits.shape[0]
        if self.ids.shape != (n,) or self.labels.shape != (n,):
            raise ValueError(f"Scores: ids {self.ids.shape}, labels {self.labels.shape} and "
                             f"logits {self.logits.shape} disagree on the number of videos")
        if self.class_names is not None:
            self.class_names = [str(c) for c in self.class_names]
            if len(self.class_names) != self.logits.shape[1]:
                raise ValueError(f"Scores: {len(self.class_names)} class names for "
                                 f"{self.logits.shape[1]} logit columns")

    def __len__(self) -> int:
        return int(self.logits.shape[0])

    @property
    def num_classes(self) -> int:
        return int(self.logits.shape[1])


def _check(labels, logits) -> tuple[np.ndarray, np.ndarray]:
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    logits = np.asarray(logits, dtype=np.float64)
    if logits.ndim != 2 or logits.shape[0] != labels.shape[0]:
        raise ValueError(f"labels {labels.shape} and logits {logits.shape} do not match: "
                         "expected (N,) and (N, classes)")
    bad = labels[(labels < NO_LABEL) | (labels >= logits.shape[1])]
    if bad.size:
        raise ValueError(f"labels outside [0, {logits.shape[1]}) (and not -1 = unlabeled): "
                         f"{sorted(set(bad.tolist()))[:10]}")
    return labels, logits


def labeled_mask(labels) -> np.ndarray:
    """Boolean (N,): True for videos with a label (label != -1)."""
    return np.asarray(labels).reshape(-1) != NO_LABEL


def topk_predictions(logits, k: int) -> np.ndarray:
    """int (N, k): class indices of the k highest scores, best first (ties: lower index first)."""
    logits = np.asarray(logits)
    k = min(int(k), logits.shape[1])
    return np.argsort(-logits, axis=1, kind="stable")[:, :k]


def topk_accuracy(labels, logits, k: int = 1) -> float:
    """Fraction of labeled videos whose label is among the top-k scores (NaN if none labeled).

    k larger than the number of classes is clipped to it (then every labeled video counts).
    """
    labels, logits = _check(labels, logits)
    mask = labeled_mask(labels)
    if not mask.any():
        return float("nan")
    top = topk_predictions(logits[mask], k)
    return float(np.mean(np.any(top == labels[mask, None], axis=1)))


def confusion_matrix(labels, logits, num_classes: int | None = None) -> np.ndarray:
    """int64 (C, C): entry [t, p] counts labeled videos of true class t predicted as p (top-1)."""
    labels, logits = _check(labels, logits)
    c = logits.shape[1] if num_classes is None else int(num_classes)
    mask = labeled_mask(labels)
    pred = topk_predictions(logits[mask], 1)[:, 0]
    cm = np.zeros((c, c), dtype=np.int64)
    np.add.at(cm, (labels[mask], pred), 1)
    return cm


def per_class_accuracy(labels, logits) -> tuple[np.ndarray, np.ndarray]:
    """(accuracy float64 (C,), support int64 (C,)): per-class recall; NaN where support is 0."""
    cm = confusion_matrix(labels, logits)
    support = cm.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        acc = np.where(support > 0, np.diag(cm) / np.maximum(support, 1), np.nan)
    return acc.astype(np.float64), support


def mean_class_accuracy(labels, logits) -> float:
    """Mean of per-class recall over the classes that occur in the labels (NaN if none)."""
    acc, support = per_class_accuracy(labels, logits)
    present = support > 0
    return float(acc[present].mean()) if present.any() else float("nan")


def _json_float(x: float) -> float | None:
    return None if x is None or not np.isfinite(x) else float(x)


def summarize(labels, logits, class_names: Sequence[str] | None = None, *,
              topk: Sequence[int] = (1, 5)) -> dict:
    """All metrics as a JSON-ready dict (NaN becomes None).

    Keys: num_videos, num_labeled, num_unlabeled, num_classes, top1, top5 (one 'top<k>' per
    entry of `topk`; k is clipped to the number of classes), mean_class_accuracy,
    classes_present, absent_classes (names of classes without a labeled video: excluded from
    mean_class_accuracy), notes (list of str), per_class (list of {index, name, support,
    correct, accuracy}), per_class_accuracy ({name: accuracy or None}).
    """
    labels, logits = _check(labels, logits)
    c = logits.shape[1]
    names = [str(n) for n in class_names] if class_names is not None else [f"class_{i}" for i in range(c)]
    if len(names) != c:
        raise ValueError(f"{len(names)} class names for {c} logit columns")
    mask = labeled_mask(labels)
    cm = confusion_matrix(labels, logits)
    acc, support = per_class_accuracy(labels, logits)
    out: dict = {"num_videos": int(labels.size), "num_labeled": int(mask.sum()),
                 "num_unlabeled": int((~mask).sum()), "num_classes": c}
    for k in topk:
        out[f"top{k}"] = _json_float(topk_accuracy(labels, logits, k))
    out["mean_class_accuracy"] = _json_float(mean_class_accuracy(labels, logits))
    absent = [names[i] for i in range(c) if support[i] == 0]
    out["classes_present"] = int(c - len(absent))
    out["absent_classes"] = absent
    notes = []
    if absent:
        notes.append(f"{len(absent)} of {c} classes have no labeled video and are excluded from "
                     "mean_class_accuracy")
    if (~mask).any():
        notes.append(f"{int((~mask).sum())} unlabeled videos (label -1) are excluded from the "
                     "metrics but kept in the scores")
    clipped = [k for k in topk if k > c]
    if clipped:
        notes.append(f"top-k with k in {clipped} exceeds the {c} classes: computed with k={c}")
    out["notes"] = notes
    out["per_class"] = [{"index": i, "name": names[i], "support": int(support[i]),
                         "correct": int(cm[i, i]), "accuracy": _json_float(acc[i])}
                        for i in range(c)]
    out["per_class_accuracy"] = {r["name"]: r["accuracy"] for r in out["per_class"]}
    return out


def format_summary(summary: dict, max_rows: int = 10) -> str:
    """A short human-readable report: headline numbers and the best/worst classes."""
    def pct(v):
        return "n/a" if v is None else f"{100 * v:.2f}%"
    lines = [f"videos: {summary['num_videos']} ({summary['num_labeled']} labeled), "
             f"classes: {summary['num_classes']} ({summary['classes_present']} present)"]
    for key in [k for k in summary if k.startswith("top")]:
        lines.append(f"{key:>20}: {pct(summary[key])}")
    lines.append(f"{'mean class accuracy':>20}: {pct(summary['mean_class_accuracy'])}")
    rows = [r for r in summary["per_class"] if r["accuracy"] is not None]
    rows.sort(key=lambda r: (r["accuracy"], -r["support"]))
    if rows:
        shown = rows if len(rows) <= max_rows else rows[:max_rows // 2] + rows[-(max_rows - max_rows // 2):]
        title = "per-class accuracy" + ("" if len(rows) <= max_rows else " (worst and best)")
        lines.append(title + ":")
        width = max(len(r["name"]) for r in shown)
        for r in shown:
            lines.append(f"  {r['name']:<{width}}  {pct(r['accuracy']):>8}  "
                         f"({r['correct']}/{r['support']})")
    lines.extend(f"note: {n}" for n in summary.get("notes", []))
    bad = summary.get("bad_videos") or []
    if bad:
        shown = ", ".join(f"{b['id']} ({b['problem']})" for b in bad[:max_rows // 2])
        lines.append(f"bad videos: {len(bad)}: {shown}" + (" ..." if len(bad) > max_rows // 2
                                                           else ""))
    return "\n".join(lines)


def save_scores(path: str, scores: Scores, class_names: Sequence[str] | None = None) -> str:
    """Write scores to an .npz (ids, labels, logits, class_names), atomically; returns the path.

    class_names overrides scores.class_names; when both are None, names 'class_<i>' are stored.
    """
    names = class_names if class_names is not None else scores.class_names
    if names is None:
        names = [f"class_{i}" for i in range(scores.num_classes)]
    names = [str(n) for n in names]
    if len(names) != scores.num_classes:
        raise ValueError(f"{len(names)} class names for {scores.num_classes} logit columns")
    path = os.fspath(path)
    if not path.endswith(".npz"):
        path += ".npz"
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, ids=np.asarray(scores.ids, dtype=str), labels=scores.labels,
                 logits=scores.logits, class_names=np.asarray(names, dtype=str))
    return path


def load_scores(path: str) -> Scores:
    """Read an .npz written by save_scores (no pickle)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = {"ids", "labels", "logits"} - set(z.files)
            if missing:
                raise ValueError(f"score file {path} lacks {sorted(missing)} (has {z.files})")
            names = z["class_names"].tolist() if "class_names" in z.files else None
            return Scores(ids=z["ids"], labels=z["labels"], logits=z["logits"], class_names=names)
    except FileNotFoundError:
        raise FileNotFoundError(f"score file not found: {path}") from None
