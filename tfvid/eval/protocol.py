"""Test-time protocols: multi-view averaging (TSN 25 snippets x 10 crops) and M-TWI.

TSN test protocol (REFERENCE.md section 2): 25 snippets x 10 crops (4 corners + centre, and their
horizontal flips); the unnormalised scores are averaged over crops, then over snippets, before any
softmax. Here a "view" is one crop of the whole clip (B, V, T, S, S, C): the model sees each view
as a (T, S, S, C) clip and its segmental consensus reduces the T snippets (for TSN the average),
then `predict_views` averages the V view logits. So the order is snippets-then-crops; for the
linear "avg" consensus both orders give the same number (mean over a grid is order free). For
max / top-k / attention consensus the model's consensus is applied per crop, which is what
running the trained model on each crop means.

M-TWI (untrimmed videos) aggregates snippet scores sampled at 1 per second: `mtwi_scores`.
"""
from __future__ import annotations

import math
from typing import Callable, Iterable, Sequence

import numpy as np
import tensorflow as tf

from tfvid.eval.metrics import Scores

DEFAULT_VIEW_BATCH = 10


def _forward_fn(model) -> Callable:
    """A Keras model runs in inference mode; any other callable is used as given."""
    if hasattr(model, "trainable_variables") and hasattr(model, "layers"):
        return lambda x: model(x, training=False)
    return model


def predict_views(model, clips, *, view_batch: int = DEFAULT_VIEW_BATCH) -> tf.Tensor:
    """Average a model's logits over the views of each clip.

    Args:
      model: keras.Model (or callable) mapping (n, T, S, S, C) -> logits (n, classes).
      clips: (B, V, T, S, S, C) float: V views (crops) of B clips; a 5-D (B, T, S, S, C) batch is
        taken as one view per clip.
      view_batch: at most this many clips (B*V rows) go through the model at once, so memory stays
        bounded with 25 snippets x 10 crops; the result does not depend on it.

    Returns:
      float32 (B, classes): mean over the V views of the model's logits (the model itself has
      already reduced the T snippets with its consensus; see the module docstring for the order).
    """
    if view_batch < 1:
        raise ValueError(f"view_batch must be >= 1, got {view_batch}")
    clips = tf.convert_to_tensor(clips)
    if clips.shape.rank == 5:
        clips = clips[:, None]
    if clips.shape.rank != 6:
        raise ValueError(f"clips must be (B, V, T, S, S, C), got shape {clips.shape}")
    shape = tf.shape(clips)
    b, v = int(shape[0]), int(shape[1])
    flat = tf.reshape(clips, tf.concat([[b * v], shape[2:]], axis=0))
    forward = _forward_fn(model)
    outputs = [tf.cast(forward(flat[i:i + view_batch]), tf.float32)
               for i in range(0, b * v, view_batch)]
    logits = tf.concat(outputs, axis=0) if len(outputs) > 1 else outputs[0]
    return tf.reduce_mean(tf.reshape(logits, [b, v, -1]), axis=1)


def _as_str(values) -> list[str]:
    values = np.asarray(values).reshape(-1)
    return [x.decode("utf-8") if isinstance(x, bytes) else str(x) for x in values.tolist()]


def evaluate(model, dataset: Iterable, *, view_batch: int = DEFAULT_VIEW_BATCH,
             progress: bool = True, class_names: Sequence[str] | None = None) -> Scores:
    """Run `predict_views` over a finite dataset of {'clip', 'label', 'id'} batches.

    Args:
      model: keras.Model (B, T, S, S, C) -> logits; run in inference mode under one tf.function.
      dataset: tf.data.Dataset (or any iterable) of dicts with 'clip' (B, V, T, S, S, C),
        'label' int (B,) (-1 = unlabeled) and 'id' string (B,), e.g. tfvid.data.build_dataset in
        mode 'test' or 'val'. It must be finite.
      view_batch: see predict_views.
      progress: show a tqdm bar.
      class_names: stored in the returned Scores.

    Returns:
      Scores(ids (N,), labels (N,), logits (N, classes)) in dataset order.
    """
    if isinstance(dataset, tf.data.Dataset):
        card = int(dataset.cardinality())
        if card == int(tf.data.INFINITE_CARDINALITY):
            raise ValueError("evaluate needs a finite dataset (built with repeat=False); "
                             "this one repeats forever")
        total = card if card >= 0 else None
    else:
        total = len(dataset) if hasattr(dataset, "__len__") else None
    base = _forward_fn(model)
    forward = tf.function(base, reduce_retracing=True) if base is not model else model
    ids, labels, logits = [], [], []
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=total, desc="evaluate", unit="batch")
    try:
        for batch in dataset:
            for key in ("clip", "label", "id"):
                if key not in batch:
                    raise KeyError(f"evaluate: dataset element lacks '{key}' (has {sorted(batch)})")
            logits.append(predict_views(forward, batch["clip"], view_batch=view_batch).numpy())
            labels.append(np.asarray(batch["label"]).reshape(-1))
            ids.extend(_as_str(batch["id"]))
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    if not logits:
        raise ValueError("evaluate: the dataset yielded no batches")
    return Scores(ids=np.asarray(ids, dtype=str), labels=np.concatenate(labels),
                  logits=np.concatenate(logits, axis=0), class_names=class_names)


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def mtwi_scores(snippet_scores, *, spans: Sequence[int] = (1, 2, 4, 8, 16),
                overlap: float = 0.2, fps: float = 1.0, min_k: int = 15,
                softmax: bool = False) -> np.ndarray:
    """Multi-scale Temporal Window Integration (TSN paper section 4; REFERENCE.md section 2).

    Args:
      snippet_scores: (S, classes) scores of snippets sampled at `fps` per second, or
        (S, crops, classes), reduced by the max over crops first.
      spans: window lengths in seconds; a window covers round(span * fps) snippets.
      overlap: windows of w snippets start every ceil(w * (1 - overlap)) snippets (0.8 w), at
        0, stride, 2 stride, ... while the start is inside the video; the last ones are cut at the
        end of the video (as in the ActivityNet 2016 reference code).
      min_k: per span, each class averages its k largest window scores with
        k = max(min_k, floor(#windows / 4)); all windows when there are fewer than k.
      softmax: apply a softmax to the final scores.

    Returns:
      float64 (classes,): the mean over spans of the top-k pooled window scores, where a
      window's score is the per-class max over its snippets.
    """
    x = np.asarray(snippet_scores, dtype=np.float64)
    if x.ndim == 3:
        x = x.max(axis=1)
    if x.ndim != 2 or x.shape[0] == 0:
        raise ValueError(f"snippet_scores must be (S, classes) or (S, crops, classes) with S > 0, "
                         f"got shape {np.shape(snippet_scores)}")
    n = x.shape[0]
    pooled = []
    for span in spans:
        width = max(1, int(round(span * fps)))
        stride = max(1, math.ceil(width * (1.0 - overlap)))
        windows = np.stack([x[s:s + width].max(axis=0) for s in range(0, n, stride)])
        k = min(max(int(min_k), len(windows) // 4), len(windows))
        top = np.sort(windows, axis=0)[-k:]
        pooled.append(top.mean(axis=0))
    out = np.mean(pooled, axis=0)
    return _softmax(out) if softmax else out
