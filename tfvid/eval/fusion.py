"""Late fusion of streams: a weighted average of video-level unnormalised scores.

TSN (docs/tsn.md) fuses the RGB and flow streams by a weighted average of their
multi-view averaged logits, before any softmax: RGB 1 : flow 1.5 in the authors' README. Dynamic
image nets fuse their four streams the same way. Streams are aligned by video id, so score files
may list the videos in any order.
"""
from __future__ import annotations

import os
import zipfile
from typing import Sequence

import numpy as np

from tfvid.eval.metrics import NO_LABEL, Scores, load_scores


def _name(stream, index: int) -> str:
    return f"stream {index} ({stream})" if isinstance(stream, (str, os.PathLike)) else f"stream {index}"


def _preview(ids, limit: int = 5) -> str:
    ids = sorted(ids)
    more = f" and {len(ids) - limit} more" if len(ids) > limit else ""
    return ", ".join(repr(i) for i in ids[:limit]) + more


def _load(path, name: str) -> Scores:
    """load_scores; a file that is not a scores .npz -> ValueError naming the stream."""
    try:
        return load_scores(path)
    except FileNotFoundError:
        raise
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as e:
        detail = f": {e}" if str(e).startswith("score file") else ""   # load_scores' own words
        raise ValueError(f"{name} is not a scores .npz written by the evaluate job{detail}") \
            from None


def fuse(score_sets: Sequence[Scores | str], weights: Sequence[float] | None = None) -> Scores:
    """Weighted average of several streams' logits, aligned by video id.

    Args:
      score_sets: Scores objects or paths of .npz files written by save_scores (at least one).
      weights: one non-negative weight per stream (default: equal); they are normalised to sum 1,
        so (1, 1.5) gives (0.4 rgb + 0.6 flow).

    Returns:
      Scores in the video order of the first stream: logits = sum_i w_i logits_i / sum_i w_i;
      labels from the streams (a video labeled in any stream keeps that label); class names of
      the first stream that has them.

    Raises:
      FileNotFoundError: a path that does not exist.
      ValueError: a file is not a scores .npz, a stream lacks ids another stream has (the ids are named), a stream repeats an
        id, labels disagree, class names or class counts differ, or the weights are invalid.
    """
    if not score_sets:
        raise ValueError("fuse needs at least one score set")
    names = [_name(s, i) for i, s in enumerate(score_sets)]
    sets = [_load(s, name) if isinstance(s, (str, os.PathLike)) else s
            for s, name in zip(score_sets, names)]
    if weights is None:
        weights = [1.0] * len(sets)
    w = np.asarray(weights, dtype=np.float64).reshape(-1)
    if w.size != len(sets):
        raise ValueError(f"{w.size} weights for {len(sets)} score sets")
    if (w < 0).any() or not np.isfinite(w).all() or w.sum() <= 0:
        raise ValueError(f"weights must be finite, non-negative and not all zero, got {w.tolist()}")
    w = w / w.sum()

    ref = sets[0]
    class_names = next((s.class_names for s in sets if s.class_names is not None), None)
    for s, name in zip(sets, names):
        if s.num_classes != ref.num_classes:
            raise ValueError(f"{name} has {s.num_classes} classes, {names[0]} has {ref.num_classes}")
        if s.class_names is not None and class_names is not None and s.class_names != class_names:
            diff = [i for i, (a, b) in enumerate(zip(s.class_names, class_names)) if a != b]
            raise ValueError(f"{name}: class names differ from the other streams at indices "
                             f"{diff[:5]} (e.g. {s.class_names[diff[0]]!r} vs "
                             f"{class_names[diff[0]]!r})")
        ids, counts = np.unique(s.ids, return_counts=True)
        if (counts > 1).any():
            raise ValueError(f"{name} repeats video ids: {_preview(ids[counts > 1].tolist())}")

    all_ids = set().union(*(set(s.ids.tolist()) for s in sets))
    for s, name in zip(sets, names):
        missing = all_ids - set(s.ids.tolist())
        if missing:
            raise ValueError(f"{name} lacks {len(missing)} video ids present in other streams: "
                             f"{_preview(missing)}")

    order = ref.ids
    logits = np.zeros(ref.logits.shape, dtype=np.float64)
    labels = np.full(len(order), NO_LABEL, dtype=np.int64)
    for s, name, wi in zip(sets, names, w):
        pos = {vid: i for i, vid in enumerate(s.ids.tolist())}
        idx = np.fromiter((pos[v] for v in order.tolist()), dtype=np.int64, count=len(order))
        logits += wi * s.logits[idx].astype(np.float64)
        lab = s.labels[idx]
        clash = (labels != NO_LABEL) & (lab != NO_LABEL) & (labels != lab)
        if clash.any():
            raise ValueError(f"{name}: labels disagree with the other streams for videos "
                             f"{_preview(order[clash].tolist())}")
        labels = np.where(labels == NO_LABEL, lab, labels)
    return Scores(ids=order, labels=labels, logits=logits.astype(np.float32),
                  class_names=class_names)
