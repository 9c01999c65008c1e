"""Accuracy on order-free classes and on time-reversal pairs (classes that differ only in the
direction of time): what order-aware models (StNet, DIN, VideoMap) buy over TSN's average
consensus, which cannot tell the two classes of a pair apart (50% within a pair).
"""
from __future__ import annotations

from typing import Iterable, Sequence

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
