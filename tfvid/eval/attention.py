"""attention.png beside an evaluation: VideoMap's temporal attention a0 (one weight per frame)
over time for a few videos of the evaluation data (docs/videomap.md), drawn by
tfvid.eval.plots.save_attention_png. pipelines.evaluate writes it for a model with an
ATTENTION_LAYER layer.
"""
from __future__ import annotations

import numpy as np

from tfvid.eval import plots
from tfvid.models.videomap import videomap_attention

ATTENTION_LAYER = "attention_a0"
ATTENTION_VIDEOS = 6     # videos drawn in attention.png (different classes first)


def has_layer(model, name: str) -> bool:
    try:
        model.get_layer(name)
    except (ValueError, AttributeError):
        return False
    return True


def plot_attention(model, dataset, class_names, path: str, *, title: str | None = None,
                   max_videos: int = ATTENTION_VIDEOS) -> str | None:
    """attention.png: a0 (one weight per frame) of up to `max_videos` valid videos of the
    evaluation data (one per class first, first view), with their class names in the legend
    (tfvid.eval.plots.save_attention_png). None when no video could be drawn."""
    rank = len(model.inputs[0].shape) + 1          # views: (B, V, T, ...)
    picked, spare = [], []
    seen = set()
    for batch in dataset:
        clip = batch["clip"]
        if clip.shape.rank == rank:
            clip = clip[:, 0]                      # first view (centre crop / the features)
        valid = np.asarray(batch.get("valid", np.ones(clip.shape[0], bool))).reshape(-1)
        labels = np.asarray(batch["label"]).reshape(-1)
        ids = [i.decode() if isinstance(i, bytes) else str(i)
               for i in np.asarray(batch["id"]).reshape(-1).tolist()]
        rows = [i for i in range(len(ids)) if valid[i]]
        if not rows:
            continue
        a0 = videomap_attention(model, np.asarray(clip)[rows])
        for a, i in zip(a0, rows):
            item = (a, int(labels[i]), ids[i])
            (spare if int(labels[i]) in seen else picked).append(item)
            seen.add(int(labels[i]))
        if len(picked) >= max_videos:
            break
    chosen = (picked + spare)[:max_videos]
    if not chosen:
        return None
    weights, labels, ids = zip(*chosen)
    return plots.save_attention_png(np.stack(weights), labels, class_names, path, ids=ids,
                                    title=title)
