"""The dynamic images of one video as PNGs, and a contact sheet to look at (the job
pipelines/dynamic_images.py).

    result = dynamic_images("clip.mp4", "di_out", window=10, stride=6, methods=("arp", "rp"))
    print(format_report(result))

Dynamic Image Networks (the dynamic image networks paper, docs/dynamic_images.md). The video
is decoded with tfvid.prep.video.read_video (resized to frame_size), then
  - the whole-video dynamic image ("single dynamic image") by each of `methods`:
    arp (approximate rank pooling, tfvid.prep.rank_pooling.approximate_rank_pool) and
    rp (exact rank pooling: a linear SVR fitted on the time-varying means, exact_rank_pool);
  - the multiple dynamic images (MDI): windows of `window` frames every `stride` frames
    (tfvid.data.sampling.mdi_windows, validation rule: first start at frame 1, a window past
    the end repeats the last frame), by ARP and, if `methods` has rp, by RP.
Each is written as a PNG after the display conversion (one global min-max over H x W x C to
0..255, tfvid.layers.rank_pooling.dynamic_image_to_uint8). The contact sheet
(<stem>_contact.png) shows a few frames, the whole-video images and the window images; a
moving object leaves a trail from dark (early) to bright (late). The pairwise ranking accuracy
(percent of frame pairs ordered correctly by <d, V_t>, paper Table 2) of every image is
printed and written to <stem>_dynamic_images.json.

Output layout: <output_dir>/<stem>_<method>.png, <output_dir>/windows/<stem>_<method>_wNNN.png,
<output_dir>/<stem>_contact.png, <output_dir>/<stem>_dynamic_images.json.
"""
from __future__ import annotations

import json
import os
import time

import numpy as np

from tfvid.data.sampling import mdi_windows
from tfvid.layers.rank_pooling import dynamic_image_to_uint8
from tfvid.prep import rank_pooling as rp
from tfvid.prep.video import read_video
from tfvid.progress import progress_bar

METHODS = ("arp", "rp")


def pool(frames: np.ndarray, method: str) -> np.ndarray:
    """One dynamic image (H, W, C) float32 of frames (T, H, W, C) by 'arp' or 'rp'."""
    if method == "arp":
        return rp.approximate_rank_pool(frames)
    if method == "rp":
        if frames.shape[0] < 2:
            return np.zeros(frames.shape[1:], np.float32)   # nothing to rank
        return rp.exact_rank_pool(frames)
    raise ValueError(f"unknown method {method!r}; known: {METHODS}")


def to_uint8(di: np.ndarray) -> np.ndarray:
    """The display conversion of a dynamic image: uint8, one global min-max."""
    return np.asarray(dynamic_image_to_uint8(di))


def save_png(path: str, image: np.ndarray) -> str:
    import cv2
    rgb = image if image.shape[-1] == 3 else np.repeat(image[..., :1], 3, axis=-1)
    if not cv2.imwrite(path, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)):
        raise OSError(f"could not write {path}")
    return path


def _spread(n: int, k: int) -> list[int]:
    """Up to k indices of range(n), evenly spread, first and last included."""
    if n <= k:
        return list(range(n))
    return sorted(set(np.linspace(0, n - 1, k).round().astype(int).tolist()))


def contact_sheet(path: str, frames: np.ndarray, video_dis: dict, window_dis: dict,
                  windows: np.ndarray, *, num_frames: int = 4, num_windows: int = 8,
                  title: str = "") -> str:
    """A matplotlib grid: row 1 a few frames and the whole-video DIs, then one row of window
    DIs per method. Images are uint8 (H, W, 3)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fidx = _spread(frames.shape[0], num_frames)
    widx = _spread(len(windows), num_windows)
    top = [(frames[i], f"frame {i + 1}") for i in fidx]
    top += [(img, f"{m.upper()} whole video") for m, img in video_dis.items()]
    rows = [top] + [[(imgs[i], f"{m.upper()} frames {windows[i][0] + 1}-{windows[i][-1] + 1}")
                     for i in widx] for m, imgs in window_dis.items()]
    ncols = max(len(r) for r in rows)
    h, w = frames.shape[1:3]
    size = 2.4
    fig, axes = plt.subplots(len(rows), ncols, squeeze=False,
                             figsize=(size * ncols, size * len(rows) * h / w + 0.6))
    for r, row in enumerate(rows):
        for c in range(ncols):
            ax = axes[r][c]
            ax.axis("off")
            if c < len(row):
                ax.imshow(row[c][0])
                ax.set_title(row[c][1], fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def dynamic_images(video: str, output_dir: str, *, window: int = 10, stride: int = 6,
                   methods=("arp", "rp"), frame_size=(340, 256), short_side=None,
                   sheet_frames: int = 4, sheet_windows: int = 8, progress: bool = False) -> dict:
    """Decodes `video`, writes its dynamic images (see the module docstring); returns a dict
    with 'files' (paths written), 'contact_sheet', 'summary' (the JSON), 'accuracy' ({'video':
    {method: %}, 'windows': {method: [% per window]}}), 'num_frames', 'windows' (0-based
    indices, (num_windows, window)) and 'seconds'. progress: a bar over the images (whole
    video and windows, per method), tfvid.progress.progress_bar."""
    methods = [m.strip().lower() for m in methods if m.strip()]
    bad = [m for m in methods if m not in METHODS]
    if bad or not methods:
        raise ValueError(f"--methods: unknown {bad}; choose from {METHODS}")
    if window < 1 or stride < 1:
        raise ValueError(f"--window and --stride must be >= 1, got {window}, {stride}")
    t0 = time.time()
    frames = read_video(video, frame_size=frame_size, short_side=short_side).frames
    n = frames.shape[0]
    windows = np.asarray(mdi_windows(n, window=window, stride=stride, mode="val"))
    stem = os.path.splitext(os.path.basename(video))[0]
    os.makedirs(os.path.join(output_dir, "windows"), exist_ok=True)

    files, video_dis, window_dis = [], {}, {}
    acc = {"video": {}, "windows": {}}
    with progress_bar(total=len(methods) * (1 + len(windows)), unit="image",
                      desc=f"{os.path.basename(video)} dynamic images",
                      disable=not progress) as bar:
        for m in methods:
            bar.set_postfix_str(f"{m.upper()} whole video", refresh=False)
            d = pool(frames, m)
            acc["video"][m] = rp.pairwise_ranking_accuracy(frames, d)
            video_dis[m] = to_uint8(d)
            files.append(save_png(os.path.join(output_dir, f"{stem}_{m}.png"), video_dis[m]))
            bar.update(1)
            window_dis[m], acc["windows"][m] = [], []
            for k, idx in enumerate(windows):
                bar.set_postfix_str(f"{m.upper()} window {k + 1}/{len(windows)}", refresh=False)
                clip = frames[idx]
                dk = pool(clip, m)
                acc["windows"][m].append(rp.pairwise_ranking_accuracy(clip, dk))
                window_dis[m].append(to_uint8(dk))
                files.append(save_png(os.path.join(output_dir, "windows",
                                                    f"{stem}_{m}_w{k:03d}.png"),
                                       window_dis[m][-1]))
                bar.update(1)
    sheet = contact_sheet(os.path.join(output_dir, f"{stem}_contact.png"), frames, video_dis,
                          window_dis, windows, num_frames=sheet_frames, num_windows=sheet_windows,
                          title=f"{os.path.basename(video)}: {n} frames, windows of {window} "
                                f"every {stride}")
    files.append(sheet)
    summary = os.path.join(output_dir, f"{stem}_dynamic_images.json")
    result = {"video": video, "num_frames": n, "frame_size": [frames.shape[2], frames.shape[1]],
              "window": window, "stride": stride, "methods": methods,
              "windows": windows.tolist(), "accuracy": acc, "files": files,
              "output_dir": output_dir, "contact_sheet": sheet, "summary": summary,
              "seconds": round(time.time() - t0, 2)}
    with open(summary, "w", encoding="utf-8") as f:
        json.dump(result, f, indent=1)
    result["files"].append(summary)
    return result


def format_report(result: dict) -> str:
    """The ranking accuracies of one dynamic_images result and where its files are (a summary,
    not every path: the JSON lists them), as printed by the job."""
    acc = result["accuracy"]
    lines = [f"{result['video']}: {result['num_frames']} frames, {len(result['windows'])} windows "
          f"of {result['window']} (stride {result['stride']})"
          + (f", {result['seconds']:.1f} s" if "seconds" in result else "")]
    for m in result["methods"]:
        w = acc["windows"][m]
        lines.append(f"  {m.upper()}: pairwise ranking accuracy {acc['video'][m]:.1f}% (whole "
                     f"video), {np.mean(w):.1f}% (mean over windows)")
    out = result.get("output_dir") or os.path.dirname(result["files"][0])
    n_video = len(result["methods"])
    n_windows = n_video * len(result["windows"])
    lines += [f"  contact sheet: {result.get('contact_sheet', '')}",
              f"  {n_video} whole-video PNG(s) in {out}, {n_windows} window PNG(s) in "
              f"{os.path.join(out, 'windows')}",
              f"  accuracies and the list of files: {result.get('summary', '')}"]
    return "\n".join(lines)
