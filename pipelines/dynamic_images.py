"""Writes the dynamic images of one video as PNGs, and a contact sheet to look at.

    python -m pipelines.dynamic_images --video=clip.mp4 --output_dir=di_out
    python -m pipelines.dynamic_images --video=a.mp4,b.avi --output_dir=di_out  # several
    python -m pipelines.dynamic_images --video=clip.avi --output_dir=di_out --methods=arp \\
        --window=10 --stride=6 --frame_size=340x256

Dynamic Image Networks (docs/dynamic_images.md): the whole-video dynamic image by each of
--methods (arp: approximate rank pooling, rp: exact rank pooling), and the multiple dynamic
images of windows of --window frames every --stride frames, written as PNGs with a contact sheet
(<stem>_contact.png) and the pairwise ranking accuracy of each image
(<stem>_dynamic_images.json); see tfvid.prep.dynamic_images.

Output layout: <output_dir>/<stem>_<method>.png, <output_dir>/windows/<stem>_<method>_wNNN.png,
<output_dir>/<stem>_contact.png, <output_dir>/<stem>_dynamic_images.json.
"""
from __future__ import annotations

import os

from absl import flags

from pipelines.common import UsageError, check_args, define_flag, parse_frame_size, run_job
from tfvid.prep.dynamic_images import METHODS, dynamic_images, format_report

FLAGS = flags.FLAGS

define_flag("list", "video", None, "Video file(s), comma-separated (mp4, avi, webm...). A list, as "
        "pipelines.predict defines the same flag.")
define_flag("string", "output_dir", None, "Where the PNGs and the JSON summary are written.")
define_flag("integer", "window", 10, "Frames per MDI window (paper: 10).")
define_flag("integer", "stride", 6, "Frames between MDI window starts (paper: 6).")
define_flag("list", "methods", ["arp", "rp"], "Pooling methods: arp (approximate rank pooling), "
        "rp (exact rank pooling, an SVR per video: slower).")
define_flag("string", "frame_size", "340x256", "Decoded frame size: WIDTHxHEIGHT, shortN "
            "(short side N, aspect kept) or 'original'.")
define_flag("integer", "sheet_frames", 4, "Video frames shown on the contact sheet.")
define_flag("integer", "sheet_windows", 8, "Window images shown per method on the contact sheet "
        "(evenly spread when there are more windows).")
define_flag("bool", "progress", True, "Show a progress bar (one line every 30 s when stderr is "
            "not a terminal).")


def main(argv):
    check_args(argv, "video", "output_dir")
    size, short_side = parse_frame_size(FLAGS.frame_size)
    methods = [m.strip().lower() for m in FLAGS.methods if m.strip()]
    if not methods or any(m not in METHODS for m in methods):
        raise UsageError(f"--methods={','.join(FLAGS.methods)}: choose from {', '.join(METHODS)}")
    if FLAGS.window < 1 or FLAGS.stride < 1:
        raise UsageError(f"--window and --stride must be >= 1, got {FLAGS.window}, "
                         f"{FLAGS.stride}")
    missing = [v for v in FLAGS.video if not os.path.isfile(v)]
    if missing:
        raise UsageError(f"--video: no such file: {', '.join(missing)}")
    for video in FLAGS.video:
        result = dynamic_images(video, FLAGS.output_dir, window=FLAGS.window,
                                stride=FLAGS.stride, methods=methods, frame_size=size,
                                short_side=short_side,
                                sheet_frames=FLAGS.sheet_frames,
                                sheet_windows=FLAGS.sheet_windows, progress=FLAGS.progress)
        print(format_report(result))


def run():
    """Console-script entry point (tfvid-dynamic-images)."""
    run_job(main)


if __name__ == "__main__":
    run()
