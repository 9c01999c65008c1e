"""Confusion matrix figure (PNG, matplotlib Agg canvas, no pyplot state), CSV tables and the bad-video list (TSV) of the evaluation results; the attention-over-time figure of a VideoMap run."""
from __future__ import annotations

import csv
import os
from typing import Sequence

import numpy as np

from tfvid.atomic import atomic_path


def _names(class_names: Sequence[str] | None, c: int) -> list[str]:
    names = [str(n) for n in class_names] if class_names is not None else [f"class_{i}" for i in range(c)]
    if len(names) != c:
        raise ValueError(f"{len(names)} class names for a {c}x{c} confusion matrix")
    return names


def _check_cm(cm) -> np.ndarray:
    cm = np.asarray(cm)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
        raise ValueError(f"confusion matrix must be square (C, C), got shape {cm.shape}")
    return cm


def row_normalize(cm) -> np.ndarray:
    """float64 (C, C): each row divided by its sum (rows of absent classes stay 0)."""
    cm = _check_cm(cm).astype(np.float64)
    sums = cm.sum(axis=1, keepdims=True)
    return np.divide(cm, sums, out=np.zeros_like(cm), where=sums > 0)


def save_confusion_png(cm, class_names: Sequence[str] | None, path: str, *,
                       title: str | None = None, max_label_chars: int = 24) -> str:
    """Draw a row-normalised confusion matrix (rows true, columns predicted) to `path`.

    Every class is named on both axes; the figure and font scale with the number of classes so
    that up to ~100 classes stay readable; counts are printed in the cells for <= 20 classes.
    """
    from matplotlib.figure import Figure
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    cm = _check_cm(cm)
    c = cm.shape[0]
    names = [n if len(n) <= max_label_chars else n[:max_label_chars - 1] + "…"
             for n in _names(class_names, c)]
    norm = row_normalize(cm)
    side = float(np.clip(0.16 * c + 3.0, 5.0, 24.0))
    font = float(np.clip(300.0 / max(c, 1), 6.0, 10.0))   # 6 pt fits the 0.16 in rows
    fig = Figure(figsize=(side + 1.5, side), dpi=100 if c <= 40 else 120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    image = ax.imshow(norm, cmap="Blues", vmin=0.0, vmax=1.0, interpolation="nearest")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="fraction of the true class")
    ax.set_xticks(np.arange(c))
    ax.set_yticks(np.arange(c))
    ax.set_xticklabels(names, rotation=90, fontsize=font)
    ax.set_yticklabels(names, fontsize=font)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    if title:
        ax.set_title(title)
    if c <= 20:
        for t in range(c):
            for p in range(c):
                if cm[t, p]:
                    ax.text(p, t, str(int(cm[t, p])), ha="center", va="center", fontsize=font,
                            color="white" if norm[t, p] > 0.5 else "black")
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, format="png")
    return path


def save_attention_png(weights, labels: Sequence[int], class_names: Sequence[str] | None,
                       path: str, *, ids: Sequence[str] | None = None,
                       title: str | None = None) -> str:
    """Draw per-frame attention weights over time, one line per video, to `path`.

    weights: (N, T) (e.g. a VideoMap's a0, tfvid.models.videomap.videomap_attention); labels:
    (N,) class indices (-1: unlabeled); the legend names each line's class (and its id).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    weights = np.asarray(weights, dtype=np.float64)
    if weights.ndim != 2 or not weights.size:
        raise ValueError(f"attention weights must be (videos, T), got shape {weights.shape}")
    labels = [int(v) for v in np.asarray(labels).reshape(-1)]
    if len(labels) != weights.shape[0]:
        raise ValueError(f"{len(labels)} labels for {weights.shape[0]} attention rows")
    names = [str(n) for n in class_names] if class_names is not None else None
    fig = Figure(figsize=(8, 4.5), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    t = np.arange(1, weights.shape[1] + 1)
    for i, (row, label) in enumerate(zip(weights, labels)):
        name = (names[label] if names is not None and 0 <= label < len(names)
                else ("unlabeled" if label < 0 else f"class_{label}"))
        if ids is not None:
            name = f"{name} ({ids[i]})"
        ax.plot(t, row, marker="o" if len(t) <= 32 else None, markersize=3, label=name)
    ax.set_xlabel("frame (time step of the map)")
    ax.set_ylabel("attention weight a0")
    ax.set_xlim(1, max(len(t), 2))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    ax.set_title(title or "temporal attention a0 per video")
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return path


def save_confusion_csv(cm, class_names: Sequence[str] | None, path: str) -> str:
    """CSV of counts: header 'true\\predicted', then one row per true class."""
    cm = _check_cm(cm)
    names = _names(class_names, cm.shape[0])
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["true\\predicted"] + names)
        for name, row in zip(names, cm):
            writer.writerow([name] + [int(x) for x in row])
    return path


def save_per_class_csv(summary: dict, path: str) -> str:
    """CSV of summary['per_class'] (from tfvid.eval.metrics.summarize): index, name, support,
    correct, accuracy (empty for classes without videos)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["index", "name", "support", "correct", "accuracy"])
        for r in summary["per_class"]:
            acc = "" if r["accuracy"] is None else f"{r['accuracy']:.6f}"
            writer.writerow([r["index"], r["name"], r["support"], r["correct"], acc])
    return path


def _tsv_field(text) -> str:
    return " ".join(str(text).replace("\t", " ").splitlines())


def save_bad_videos_tsv(bad_videos: Sequence[dict], path: str) -> str:
    """TSV with a header 'id<TAB>problem' and one line per bad video (tabs and newlines inside a
    field become spaces); written atomically, header only when there is none."""
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8", newline="") as f:
        f.write("id\tproblem\n")
        for b in bad_videos:
            f.write(f"{_tsv_field(b['id'])}\t{_tsv_field(b['problem'])}\n")
    return path


def write_report(scores, output_dir: str, *, title: str | None = None,
                 extra: dict | None = None, bad_videos: Sequence[dict] | None = None) -> dict:
    """Write metrics.json, scores.npz, confusion.png, confusion.csv, per_class.csv and
    bad_videos.tsv.

    Args:
      scores: tfvid.eval.metrics.Scores (class names default to 'class_<i>') of the scorable
        videos.
      output_dir: created if needed.
      title: figure title.
      extra: merged into metrics.json (e.g. the evaluation flags).
      bad_videos: [{'id', 'problem'}] of the videos left out of `scores` (e.g.
        tfvid.eval.protocol.Evaluation.bad_videos): metrics.json gets 'num_bad_videos',
        'bad_videos' and a note; bad_videos.tsv lists them (header only when there is none).

    Returns:
      The summary dict written to metrics.json (see metrics.summarize).
    """
    import json
    from tfvid.eval import metrics

    names = scores.class_names or [f"class_{i}" for i in range(scores.num_classes)]
    summary = metrics.summarize(scores.labels, scores.logits, names)
    bad = [{"id": str(b["id"]), "problem": str(b["problem"])} for b in (bad_videos or [])]
    summary["num_bad_videos"] = len(bad)
    summary["bad_videos"] = bad
    if bad:
        summary["notes"] = summary["notes"] + [
            f"{len(bad)} bad videos are left out of the scores and metrics (bad_videos.tsv)"]
    if extra:
        summary = {**summary, **extra}
    os.makedirs(output_dir, exist_ok=True)
    save_bad_videos_tsv(bad, os.path.join(output_dir, "bad_videos.tsv"))
    metrics.save_scores(os.path.join(output_dir, "scores.npz"), scores, names)
    with atomic_path(os.path.join(output_dir, "metrics.json")) as tmp, \
            open(tmp, "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=2)
    cm = metrics.confusion_matrix(scores.labels, scores.logits)
    save_confusion_png(cm, names, os.path.join(output_dir, "confusion.png"), title=title)
    save_confusion_csv(cm, names, os.path.join(output_dir, "confusion.csv"))
    save_per_class_csv(summary, os.path.join(output_dir, "per_class.csv"))
    return summary
