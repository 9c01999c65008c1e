"""Add optical flow to data prepared without it (RGB first, flow later or elsewhere).

    python -m pipelines.extract_flow --data='data/ucf101/train1-*.tfrecord' \\
        --output_dir=data/ucf101_flow --flow=tvl1 --workers=2
    python -m pipelines.extract_flow --data=data/ucf101/train1.list --flow=dis

TFRecord shards are rewritten into --output_dir (same names) with flow under FORWARD_FLOW/, as
prepare_data --flow writes it; records that already hold flow are copied unless --overwrite.
Raw-frame folders (a .list file) get flow_x_/flow_y_ JPEGs beside their img_ files. A rerun
skips finished shards and folders. Rejected videos (fewer than 2 frames, undecodable frames)
and corrupt input shards are listed in extract_flow-rejects.tsv; the counts go to
extract_flow-summary.json (see tfvid.prep.extract_flow).
"""
from __future__ import annotations

import json
import os

from absl import app, flags

from pipelines.common import check_args, define_flag, resolve_files, run_job

FLAGS = flags.FLAGS

define_flag("string", "data", None, "Prepared data without flow: TFRecord globs/directories "
            "(comma-separated) or one raw-frames .list file.")
define_flag("string", "output_dir", None, "Where the TFRecord shards with flow go (not the "
            "input folder). Unused for .list data: flow files go into the frame folders.")
define_flag("enum", "flow", "tvl1", "Optical flow method: tvl1 (TSN; ~1.3 s per frame pair "
            "on 2 cores), dis (fast) or farneback.",
            enum_values=["none", "tvl1", "dis", "farneback"])
define_flag("float", "flow_bound", 20.0, "Flow clip bound in pixels (TSN: 20).")
define_flag("integer", "workers", os.cpu_count() or 1, "Flow processes (default: all cores).")
define_flag("bool", "overwrite", False, "Recompute flow that is already stored.")
define_flag("bool", "progress", True, "Show a progress bar.")


def main(argv):
    check_args(argv, "data")
    from tfvid.prep.extract_flow import add_flow_to_frames, add_flow_to_records
    if FLAGS.flow == "none":
        raise app.UsageError("--flow=none: choose tvl1, dis or farneback")
    if FLAGS.flow_bound <= 0 or FLAGS.workers < 1:
        raise app.UsageError(f"--flow_bound must be positive and --workers >= 1, got "
                             f"{FLAGS.flow_bound}, {FLAGS.workers}")
    try:
        files = resolve_files(FLAGS.data, "data")
    except (FileNotFoundError, ValueError) as e:
        raise app.UsageError(str(e)) from None
    lists = [f for f in files if f.endswith(".list")]
    common = dict(method=FLAGS.flow, bound=FLAGS.flow_bound, workers=FLAGS.workers,
                  overwrite=FLAGS.overwrite, progress=FLAGS.progress)
    if lists:
        if len(files) != 1:
            raise app.UsageError(f"--data: give one .list file, or TFRecord shards (got "
                                 f"{len(files)} files)")
        summary = add_flow_to_frames(lists[0], **common)
    else:
        if not FLAGS.output_dir:
            raise app.UsageError("--output_dir is required for TFRecord shards")
        try:
            summary = add_flow_to_records(files, FLAGS.output_dir, **common)
        except ValueError as e:
            raise app.UsageError(str(e)) from None
    print(json.dumps(summary, indent=1))
    return summary


def run():
    """Console-script entry point (tfvid-extract-flow)."""
    run_job(main)


if __name__ == "__main__":
    run()
