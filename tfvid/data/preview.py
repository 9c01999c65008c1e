"""A look at what the input pipeline feeds the model: one training and one evaluation batch.

`preview_batches` prints each batch's shapes, value range, labels and ids, and saves the training
batch as a PNG grid (one row per video, one column per snippet, titled with the class name),
with the backbone's normalisation undone for display. The quickstart uses it as its step 3.
"""
from __future__ import annotations

import numpy as np

from tfvid.data.normalization import normalization_config
from tfvid.data.pipeline import build_dataset
from tfvid.data.sampling import TSNSampler


def denormalize(clip: np.ndarray, backbone: str) -> np.ndarray:
    """RGB snippets (..., 3) normalised for `backbone` -> display values in [0, 1]."""
    cfg = normalization_config(backbone, "rgb")
    x = (clip * np.asarray(cfg["std"]) + np.asarray(cfg["mean"])) / cfg["scale"]
    if cfg["channel_order"] == "bgr":
        x = x[..., ::-1]
    return np.clip(x / 255.0, 0.0, 1.0)


def preview_batches(train_files: str, eval_files: str, out_png: str, *, input_size: int,
                    backbone: str = "tiny", num_segments: int = 3, num_crops: int = 3,
                    batch_size: int = 4, class_names: list[str] | None = None) -> list[str]:
    """Prints one training batch (B, K, S, S, 3) and one evaluation batch (B, V, K, S, S, 3) of
    RGB TSN clips and writes the training batch to `out_png`; returns the printed lines."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    common = dict(sampler=TSNSampler(num_segments=num_segments), modality="rgb",
                  input_size=input_size, backbone=backbone, batch_size=batch_size)
    train = next(iter(build_dataset(train_files, mode="train", **common)))
    val = next(iter(build_dataset(eval_files, mode="val", num_crops=num_crops, **common)))

    def name_of(label: int) -> str:
        if class_names and 0 <= label < len(class_names):
            return class_names[label]
        return f"class {label}"

    lines = []
    for name, batch in (("training", train), ("evaluation", val)):
        clip = batch["clip"].numpy()
        labels = [int(v) for v in batch["label"].numpy()]
        lines.append(f"{name} batch: clip {clip.shape} float32 in [{clip.min():.2f}, "
                     f"{clip.max():.2f}], labels {labels} "
                     f"({', '.join(name_of(v) for v in labels)}), ids "
                     f"{[i.decode() for i in batch['id'].numpy()[:2]]}...")
    clips = denormalize(train["clip"].numpy(), backbone)
    rows, cols = clips.shape[0], clips.shape[1]
    fig, axes = plt.subplots(rows, cols, figsize=(2 * cols, 2 * rows), squeeze=False)
    for b in range(rows):
        for k in range(cols):
            axes[b, k].imshow(clips[b, k])
            axes[b, k].set_axis_off()
            axes[b, k].set_title(f"{name_of(int(train['label'][b]))}, snippet {k + 1}",
                                 fontsize=7)
    fig.tight_layout()
    fig.savefig(out_png, dpi=80)
    plt.close(fig)
    lines.append(f"preview of the training batch ({cols} snippets per video, augmented): "
                 f"{out_png}")
    print("\n".join(lines))
    return lines


__all__ = ["denormalize", "preview_batches"]
