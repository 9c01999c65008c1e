"""Which frames a DIN or VideoMap model looked at, for the videos predict classified
(pipelines.predict --attention_plot=PATH). The evaluation's attention.png is tfvid.eval.attention.

An export's signatures return logits only, so the Keras model is rebuilt from the training run
(tfvid.train.run_dir): the run dir given (--model_dir), else the one the export's sidecar
records ("model": {"model_dir", "checkpoint"}), at the export's T and input size. The frames
are the export's: the same decoding, sampler and centre view as the prediction
(tfvid.eval.predict.make_views).

  VideoMap (with attention): a0, one weight per frame (tfvid.models.videomap.videomap_attention,
    docs/videomap.md), one line per video (tfvid.eval.plots.save_attention_png).
  DIN: per temporal width h, the share of its filters whose max over time (docs/din.md) comes
    from the window at each position, drawn at the window's centre frame: one line per width,
    one panel per video.
"""
from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from tfvid.eval import predict as local

VIDEOMAP_LAYER = "attention_a0"
DIN_LAYER = "dense_image_conv"
MAX_VIDEOS = 6


def _has_layer(model, name: str) -> bool:
    try:
        model.get_layer(name)
    except (ValueError, AttributeError):
        return False
    return True


def model_from_run(sidecar: dict, model_dir: str | None = None):
    """(Keras model with the trained weights, kind 'videomap' | 'din', run dir). ValueError
    when no run dir is known or the model has neither VideoMap attention nor DIN's DenseImage
    convolutions."""
    from tfvid.train import run_dir
    recorded = sidecar.get("model") or {}
    source = "--model_dir" if model_dir else "the export's sidecar"
    model_dir = model_dir or recorded.get("model_dir")
    if not model_dir:
        raise ValueError("--attention_plot needs the training run: give --model_dir (the "
                         "export's sidecar records none)")
    if not os.path.isdir(model_dir):
        raise ValueError(f"--attention_plot: the run dir {model_dir!r} (from {source}) does "
                         "not exist; give --model_dir")
    cfg = run_dir.read_run_config(model_dir)
    shape = sidecar["signature"]["inputs"]["clip"]["shape"]
    model = run_dir.build_model(cfg, num_segments=shape[1], input_size=shape[2])
    checkpoint = None
    if os.path.abspath(model_dir) == recorded.get("model_dir") and recorded.get("checkpoint"):
        checkpoint = os.path.join(model_dir, recorded["checkpoint"])
    run_dir.restore(model, model_dir, checkpoint)
    for kind, layer in (("videomap", VIDEOMAP_LAYER), ("din", DIN_LAYER)):
        if _has_layer(model, layer):
            return model, kind, model_dir
    raise ValueError(f"--attention_plot: the model of {model_dir} ({cfg.get('model')}) has no "
                     f"temporal attention to draw (VideoMap with attention, or DIN)")


def din_width_usage(model, clips) -> dict[int, np.ndarray]:
    """{h: float (B, T)}: per width h, the share of its filters whose max over time comes from
    the window starting at each position, placed at the window's centre frame (the shares of
    one width sum to 1 per video)."""
    import keras
    layer = model.get_layer(DIN_LAYER)
    source = model.inputs[0] if len(model.inputs) == 1 else model.inputs
    embed = keras.Model(source, layer.input, name=f"{model.name}_dense_image")(
        clips, training=False)
    t = int(embed.shape[1])
    out = {}
    for h, conv in zip(layer.widths, layer.convs):
        act = keras.ops.convert_to_numpy(layer.activation(conv(embed)))   # (B, T-h+1, M)
        winners = act.argmax(axis=1)                                      # (B, M)
        centre = (np.arange(act.shape[1]) + (h - 1) / 2.0).round().astype(int)
        share = np.zeros((act.shape[0], t), np.float64)
        for b in range(act.shape[0]):
            counts = np.bincount(winners[b], minlength=act.shape[1])
            np.add.at(share[b], centre, counts / counts.sum())
        out[int(h)] = share
    return out


def save_din_png(usage: Sequence[dict], titles: Sequence[str], path: str) -> str:
    """One panel per video, one line per width h of din_width_usage."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from tfvid.atomic import atomic_path
    n = len(usage)
    fig = Figure(figsize=(8, 2.6 * n + 0.6), dpi=100)
    FigureCanvasAgg(fig)
    for i, (widths, title) in enumerate(zip(usage, titles)):
        ax = fig.add_subplot(n, 1, i + 1)
        for h, share in sorted(widths.items()):
            ax.plot(np.arange(1, len(share) + 1), share, marker="o", markersize=3, label=f"h={h}")
        ax.set_ylabel("share of filters")
        ax.set_title(title, fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, ncol=5, loc="upper right")
    ax.set_xlabel("frame (row of the DenseImage)")
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return path


def plot_attention(sidecar: dict, results: Sequence[dict], path: str, *,
                   model_dir: str | None = None, max_videos: int = MAX_VIDEOS) -> dict:
    """The attention PNG of the first `max_videos` predicted videos (errors skipped).
    Returns {"path", "kind", "model_dir", "videos", "weights"}."""
    from tfvid.eval import plots
    from tfvid.models.videomap import videomap_attention
    model, kind, run = model_from_run(sidecar, model_dir)
    chosen = [r for r in results if r.get("status") != "error"][:max_videos]
    if not chosen:
        raise ValueError("--attention_plot: no video was predicted, nothing to draw")
    clips = np.concatenate([local.make_views(local.decode(r["video"], sidecar).frames,
                                             sidecar, 1) for r in chosen])     # (N, T, ...)
    names = [os.path.basename(r["video"]) for r in chosen]
    if kind == "videomap":
        weights = videomap_attention(model, clips)
        plots.save_attention_png(weights, [r["top_k"][0]["index"] for r in chosen],
                                 sidecar.get("class_names"), path, ids=names,
                                 title="VideoMap attention a0 over time (legend: predicted "
                                       "class)")
        data = weights.tolist()
    else:
        usage = din_width_usage(model, clips)
        per_video = [{h: u[i] for h, u in usage.items()} for i in range(len(chosen))]
        save_din_png(per_video, [f"{n}: predicted {r['top_k'][0]['label']}"
                                 for n, r in zip(names, chosen)], path)
        data = [{str(h): v.tolist() for h, v in d.items()} for d in per_video]
    return {"path": path, "kind": kind, "model_dir": run, "videos": names, "weights": data}
