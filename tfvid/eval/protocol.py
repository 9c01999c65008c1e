"""Test-time protocols: multi-view averaging (TSN 25 snippets x 10 crops) and M-TWI.

TSN test protocol (docs/tsn.md): 25 snippets x 10 crops (4 corners + centre, and their
horizontal flips); the unnormalised scores are averaged over crops, then over snippets, before any
softmax. Here a "view" is one crop of the whole clip (B, V, T, S, S, C): the model sees each view
as a (T, S, S, C) clip and its segmental consensus reduces the T snippets (for TSN the average),
then `predict_views` averages the V view logits. So the order is snippets-then-crops; for the
linear "avg" consensus both orders give the same number (mean over a grid is order free). For
max / top-k / attention consensus the model's consensus is applied per crop, which is what
running the trained model on each crop means.

Variable-length batches (build_dataset's 'num_steps', e.g. StNet's short-video rule) are run
video by video group on each video's own T steps, so cyclic padding never changes a score.

Bad videos: a batch may mark elements invalid ('valid' bool (B,), 'problem' str (B,): corrupt
JPEGs, flow count mismatches, out-of-range labels); labels are also checked here (outside
[0, num_classes) and not -1). `evaluate_videos` leaves them out of the scores and lists them
(bad_data='skip') or stops at the first (bad_data='fail'). Unlabeled videos (label -1) are not
bad: they are scored (kept in score files) and excluded from the metrics.

M-TWI (untrimmed videos) aggregates snippet scores sampled at 1 per second: `mtwi_scores`.
"""
from __future__ import annotations

import dataclasses
import logging
import math
from typing import Callable, Iterable, Sequence

import numpy as np
import tensorflow as tf

from tfvid.eval.metrics import NO_LABEL, Scores

log = logging.getLogger(__name__)

DEFAULT_VIEW_BATCH = 10


def _forward_fn(model) -> Callable:
    """A Keras model runs in inference mode; any other callable is used as given."""
    if hasattr(model, "trainable_variables") and hasattr(model, "layers"):
        return lambda x: model(x, training=False)
    return model


def _input_rank(model) -> int:
    """Rank of the model's batched input: 5 for frames (B, T, S, S, C), 3 for cached features
    (B, T, D); 5 when the model does not say (a plain callable)."""
    try:
        return len(model.inputs[0].shape)
    except (AttributeError, IndexError, TypeError):
        return 5


def predict_views(model, clips, *, view_batch: int = DEFAULT_VIEW_BATCH,
                  input_rank: int | None = None) -> tf.Tensor:
    """Average a model's logits over the views of each clip.

    Args:
      model: keras.Model (or callable) mapping (n, T, S, S, C) -> logits (n, classes).
      clips: (B, V, T, S, S, C) float: V views (crops) of B clips; a 5-D (B, T, S, S, C) batch is
        taken as one view per clip.
      view_batch: at most this many clips (B*V rows) go through the model at once, so memory stays
        bounded with 25 snippets x 10 crops; the result does not depend on it.
      input_rank: rank of the model's batched input (default: from model.inputs, else 5);
        cached-feature models take (B, T, D), so their views are (B, V, T, D).

    Returns:
      float32 (B, classes): mean over the V views of the model's logits (the model itself has
      already reduced the T snippets with its consensus; see the module docstring for the order).
    """
    if view_batch < 1:
        raise ValueError(f"view_batch must be >= 1, got {view_batch}")
    clips = tf.convert_to_tensor(clips)
    rank = input_rank or _input_rank(model)
    if clips.shape.rank == rank:
        clips = clips[:, None]
    if clips.shape.rank != rank + 1:
        want = "(B, V, T, S, S, C)" if rank == 5 else f"(B, V, T, ...) of rank {rank + 1}"
        raise ValueError(f"clips must be {want}, got shape {clips.shape}")
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


BAD_DATA = ("skip", "fail")


@dataclasses.dataclass
class Evaluation:
    """What `evaluate_videos` returns.

    scores: Scores of the scorable videos, in dataset order (unlabeled videos, label -1,
      included: they are kept in score files and excluded from the metrics).
    bad_videos: [{'id': str, 'problem': str}] in dataset order: videos left out of the scores
      (the pipeline marked them invalid, or their label is outside [0, num_classes) and not -1).
    num_steps: int (N,): the number of time steps T each scored video was run with (per video
      for variable-length samplers, e.g. StNet's short-video rule).
    """
    scores: Scores
    bad_videos: list
    num_steps: np.ndarray


class BadVideoError(ValueError):
    """A video that cannot be scored, with bad_data='fail'; `video_id` and `problem` name it."""

    def __init__(self, video_id: str, problem: str):
        super().__init__(f"bad video {video_id!r}: {problem} (bad_data='skip' evaluates the "
                         "other videos and lists the bad ones)")
        self.video_id, self.problem = video_id, problem


def label_problem(label: int, num_classes: int) -> str:
    """'' for a scorable label (0 <= label < num_classes, or -1 = unlabeled), else the reason."""
    label = int(label)
    if label == NO_LABEL or 0 <= label < num_classes:
        return ""
    return f"label {label} outside [0, {num_classes}) (and not -1 = unlabeled)"


def _static_time(model):
    """The model's fixed input T, or None when its time axis is variable (or unknown)."""
    try:
        shape = model.inputs[0].shape
        return None if len(shape) < 2 or shape[1] is None else int(shape[1])
    except (AttributeError, IndexError, TypeError, ValueError):
        return None


def _predict_batch(forward, clips, steps, *, view_batch, static_time, input_rank=5):
    """Logits (B, classes) of one batch: each video runs on its own first steps[i] time steps.

    Variable-length batches (build_dataset adds 'num_steps') are padded by repeating each video's
    steps cyclically; running every group of videos with the same T on clip[:, :, :T] gives each
    video exactly the score it has alone, whatever the model's temporal layers (StNet's temporal
    convolutions see neighbours, so padding would change it). A model with a fixed T gets the
    padded clip as before.
    """
    clips = tf.convert_to_tensor(clips)
    if clips.shape.rank == input_rank:
        clips = clips[:, None]
    full = int(tf.shape(clips)[2]) if clips.shape.rank == input_rank + 1 else None
    if steps is None or static_time is not None or full is None or (steps == full).all():
        return predict_views(forward, clips, view_batch=view_batch,
                             input_rank=input_rank).numpy()
    out = None
    for t in np.unique(steps):
        rows = np.flatnonzero(steps == t)
        part = tf.gather(clips, rows)[:, :, :max(int(t), 1)]
        logits = predict_views(forward, part, view_batch=view_batch,
                               input_rank=input_rank).numpy()
        if out is None:
            out = np.zeros((len(steps), logits.shape[1]), np.float32)
        out[rows] = logits
    return out


def evaluate_videos(model, dataset: Iterable, *, view_batch: int = DEFAULT_VIEW_BATCH,
                    progress: bool = True, class_names: Sequence[str] | None = None,
                    num_classes: int | None = None, bad_data: str = "skip") -> Evaluation:
    """Run `predict_views` over a finite dataset of {'clip', 'label', 'id'} batches.

    Args:
      model: keras.Model (B, T, S, S, C) -> logits; run in inference mode under one tf.function.
      dataset: tf.data.Dataset (or any iterable) of dicts with 'clip' (B, V, T, S, S, C),
        'label' int (B,) (-1 = unlabeled) and 'id' string (B,), e.g. tfvid.data.build_dataset in
        mode 'test' or 'val'. It must be finite. Optional keys: 'num_steps' int (B,) (each
        video's true T in a variable-length batch: each video is run on its own steps only),
        'valid' bool (B,) and 'problem' string (B,) (build_dataset's bad-record marks: invalid
        videos are left out and listed with the problem).
      view_batch: see predict_views.
      progress: show a tqdm bar.
      class_names: stored in the returned Scores.
      num_classes: labels must be in [0, num_classes) or -1 (unlabeled); default: the number of
        logit columns. Checked here too, so a pipeline without 'valid' is covered.
      bad_data: 'skip' (default): leave bad videos out of the scores and list them in
        Evaluation.bad_videos; 'fail': raise BadVideoError (a ValueError) naming the first one.
        Unlabeled videos (-1) are not bad: they are scored and excluded from the metrics.

    Returns:
      Evaluation(scores, bad_videos, num_steps), scores in dataset order.
    """
    if bad_data not in BAD_DATA:
        raise ValueError(f"bad_data must be one of {BAD_DATA}, got {bad_data!r}")
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
    static_time = _static_time(model)
    input_rank = _input_rank(model)       # 5 frames (B, T, S, S, C), 3 features (B, T, D)
    ids, labels, logits, steps_all, bad = [], [], [], [], []
    seen_batch = False
    bar = None
    if progress:
        from tfvid.progress import progress_bar
        bar = progress_bar(total=total, desc="evaluate", unit="batch")
    try:
        for batch in dataset:
            seen_batch = True
            for key in ("clip", "label", "id"):
                if key not in batch:
                    raise KeyError(f"evaluate: dataset element lacks '{key}' (has {sorted(batch)})")
            batch_ids = _as_str(batch["id"])
            batch_labels = np.asarray(batch["label"]).reshape(-1).astype(np.int64)
            problems = [""] * len(batch_ids)
            if "valid" in batch:
                valid = np.asarray(batch["valid"]).reshape(-1).astype(bool)
                texts = _as_str(batch["problem"]) if "problem" in batch else [""] * len(valid)
                problems = ["" if ok else (text or "marked invalid by the input pipeline")
                            for ok, text in zip(valid.tolist(), texts)]
            clip = batch["clip"]
            time_axis = 2 if clip.shape.rank == input_rank + 1 else 1
            if "num_steps" in batch:
                steps = np.asarray(batch["num_steps"]).reshape(-1).astype(np.int64)
            else:
                steps = np.full(len(batch_ids), int(tf.shape(clip)[time_axis]), np.int64)
            if num_classes is not None:                  # labels checked before any compute
                problems = [p or label_problem(l, num_classes)
                            for p, l in zip(problems, batch_labels.tolist())]
            keep = np.array([not p for p in problems], bool)
            if bad_data == "fail" and not keep.all():
                first = int(np.flatnonzero(~keep)[0])
                raise BadVideoError(batch_ids[first], problems[first])
            if keep.any():
                rows = np.flatnonzero(keep)
                part = clip if keep.all() else tf.gather(clip, rows)
                out = _predict_batch(forward, part, steps[rows], view_batch=view_batch,
                                     static_time=static_time, input_rank=input_rank)
                if num_classes is None:                  # now the logit columns are known
                    for i in rows.tolist():
                        problems[i] = label_problem(batch_labels[i], out.shape[1])
                    ok = np.array([not problems[i] for i in rows.tolist()], bool)
                    if bad_data == "fail" and not ok.all():
                        first = int(rows[np.flatnonzero(~ok)[0]])
                        raise BadVideoError(batch_ids[first], problems[first])
                    out, rows = out[ok], rows[ok]
                logits.append(out)
                labels.append(batch_labels[rows])
                steps_all.append(steps[rows])
                ids.extend(batch_ids[i] for i in rows.tolist())
            bad.extend({"id": batch_ids[i], "problem": problems[i]}
                       for i in range(len(batch_ids)) if problems[i])
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    if not seen_batch:
        raise ValueError("evaluate: the dataset yielded no batches")
    logits = [x for x in logits if len(x)]
    if logits:
        all_logits = np.concatenate(logits, axis=0)
    elif num_classes is not None:
        all_logits = np.zeros((0, int(num_classes)), np.float32)
    else:
        raise ValueError(f"evaluate: no video could be scored; {len(bad)} bad videos, e.g. "
                         f"{bad[:3]}")
    scores = Scores(ids=np.asarray(ids, dtype=str),
                    labels=np.concatenate(labels) if labels else np.zeros(0, np.int64),
                    logits=all_logits, class_names=class_names)
    num_steps = np.concatenate(steps_all) if steps_all else np.zeros(0, np.int64)
    return Evaluation(scores=scores, bad_videos=bad, num_steps=num_steps)


def evaluate(model, dataset: Iterable, *, view_batch: int = DEFAULT_VIEW_BATCH,
             progress: bool = True, class_names: Sequence[str] | None = None,
             num_classes: int | None = None, bad_data: str = "skip") -> Scores:
    """`evaluate_videos(...).scores`: the Scores of the scorable videos in dataset order.

    Bad videos (see evaluate_videos) are left out with a logged warning naming them
    (bad_data='skip') or raise BadVideoError (bad_data='fail'); use evaluate_videos to get
    their list.
    """
    result = evaluate_videos(model, dataset, view_batch=view_batch, progress=progress,
                             class_names=class_names, num_classes=num_classes,
                             bad_data=bad_data)
    if result.bad_videos:
        log.warning("evaluate: %d bad videos left out of the scores: %s",
                    len(result.bad_videos), describe_bad_videos(result.bad_videos))
    return result.scores


def describe_bad_videos(bad_videos, limit: int = 5) -> str:
    """'id (problem); id (problem); ... and k more' for log messages."""
    shown = "; ".join(f"{b['id']} ({b['problem']})" for b in bad_videos[:limit])
    more = len(bad_videos) - limit
    return shown + (f"; and {more} more" if more > 0 else "")


def softmax(x: np.ndarray) -> np.ndarray:
    """Softmax over the last axis (numerically stable)."""
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


_softmax = softmax          # mtwi_scores' `softmax` argument shadows the name


def mtwi_scores(snippet_scores, *, spans: Sequence[int] = (1, 2, 4, 8, 16),
                overlap: float = 0.2, fps: float = 1.0, min_k: int = 15,
                softmax: bool = False) -> np.ndarray:
    """Multi-scale Temporal Window Integration (TSN paper section 4; docs/tsn.md).

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
