"""Accuracy on order-free classes and on time-reversal pairs (classes that differ only in the
direction of time): what order-aware models (StNet, DIN, VideoMap) buy over TSN's average
consensus, which cannot tell the two classes of a pair apart (50% within a pair).
"""
from __future__ import annotations

import json
import os
from typing import Iterable, Mapping, Sequence

import numpy as np

from tfvid.eval.metrics import load_scores


def order_metrics(scores_path: str, order_free_classes: Iterable[str],
                  time_reversal_pairs: Sequence[tuple[str, str]]) -> dict:
    """From an evaluate job's scores.npz: top1, order_free (mean per-class accuracy of the
    order-free classes), pairs (mean per-class accuracy of the pair classes), within_pair (share
    of pair-class videos whose true-class logit beats the partner class's; chance 0.5), and the
    video counts. Unlabeled videos are left out; classes missing from the scores are ignored."""
    s = load_scores(scores_path)
    names = [str(n) for n in s.class_names]
    logits, labels = np.asarray(s.logits), np.asarray(s.labels)
    keep = labels >= 0
    logits, labels = logits[keep], labels[keep]
    pred = logits.argmax(axis=1)
    partner = {}
    for a, b in time_reversal_pairs:
        if a in names and b in names:
            partner[names.index(a)], partner[names.index(b)] = names.index(b), names.index(a)

    def class_mean(indices):
        accs = [float((pred[labels == c] == c).mean()) for c in indices if (labels == c).any()]
        return float(np.mean(accs)) if accs else None

    free = [names.index(c) for c in order_free_classes if c in names]
    paired = sorted(partner)
    rows = np.flatnonzero(np.isin(labels, paired))
    within = None
    if rows.size:
        own = logits[rows, labels[rows]]
        other = logits[rows, [partner[int(c)] for c in labels[rows]]]
        within = float((own > other).mean())
    return {"top1": float((pred == labels).mean()) if labels.size else None,
            "order_free": class_mean(free), "pairs": class_mean(paired),
            "within_pair": within, "videos": int(labels.size),
            "pair_videos": int(rows.size)}


def _pct(v) -> str:
    return "   -  " if v is None else f"{100 * v:5.1f}%"


def order_table(eval_dirs: Mapping[str, str], order_free_classes: Iterable[str],
                time_reversal_pairs: Sequence[tuple[str, str]]) -> str:
    """Order-free vs time-reversal-pair accuracy of evaluated runs side by side, as text:
    {title: evaluate output_dir holding scores.npz}."""
    order_free_classes = list(order_free_classes)
    width = max(len(t) for t in eval_dirs)
    lines = [f"{'':<{width}}  top-1   order-free  pair classes  within pair"]
    for title, folder in eval_dirs.items():
        m = order_metrics(os.path.join(folder, "scores.npz"), order_free_classes,
                          time_reversal_pairs)
        lines.append(f"{title:<{width}}  {_pct(m['top1'])}  {_pct(m['order_free'])}      "
                     f"{_pct(m['pairs'])}        {_pct(m['within_pair'])}")
    lines.append("within pair: of the videos of a time-reversal pair, the share whose own class "
                 "beats its time-reversed partner (50% = blind to the order of time)")
    return "\n".join(lines)


def class_group_report(metrics_path: str, class_names: Sequence[str],
                       order_free_classes: Iterable[str],
                       time_reversal_pairs: Sequence[tuple[str, str]]) -> str:
    """An evaluate job's metrics.json as text: top-1 / top-5 / mean class accuracy against
    chance, then the per-class accuracy of the order-free classes and of the pair classes."""
    with open(metrics_path, encoding="utf-8") as f:
        metrics = json.load(f)
    per_class = metrics["per_class_accuracy"]
    lines = [f"top-1 {metrics['top1']:.3f}  top-5 {metrics['top5']:.3f}  "
             f"mean class accuracy {metrics['mean_class_accuracy']:.3f}  "
             f"(chance {1 / len(class_names):.3f})", ""]
    order_free = set(order_free_classes)
    free = [c for c in class_names if c in order_free]
    paired = [c for p in time_reversal_pairs for c in p if c in class_names]
    for title, names in (("order-free classes", free), ("time-reversal pairs", paired)):
        accs = [per_class[c] for c in names if per_class.get(c) is not None]
        lines.append(f"{title}: mean accuracy {sum(accs) / max(len(accs), 1):.3f}")
        lines += [f"  {c:<24s} {per_class[c]:.3f}" for c in names if per_class.get(c) is not None]
    return "\n".join(lines)
