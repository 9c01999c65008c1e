"""Prepares a video dataset: videos + a dataset index -> sharded TFRecords and/or frame folders.

Decodes every video of each split with PyAV, resizes (TSN: 340x256), JPEG-encodes each frame,
optionally computes optical flow (TV-L1 as in TSN, or the fast DIS / Farneback), and writes one
SequenceExample per video into balanced shards (and/or raw-frame folders with a list file).
Videos are shuffled (--shuffle_seed) before they are dealt into shards, so every shard mixes the
classes. Shards are written atomically; rerunning the same command resumes after a crash (and
retries rejected videos whose file changed or whose worker died); unreadable videos are listed
in <output_dir>/<split>-rejects.tsv, truncated ones kept in part in <split>-partial.tsv. One
prepare per split at a time (a lock file <output_dir>/.<split>.lock); a video id in two splits
of one output_dir is refused.

--format=jester reads Jester and Something-Something v1: each video is a folder of JPEG frames
(<videos_dir>/<id>/00001.jpg ...) listed in semicolon-separated CSVs (id;label). With
--frame_size=original the stored JPEG files go into the records byte for byte (no re-encoding);
a resize decodes, resizes and encodes each frame once. Frame folders are at --frame_folder_fps
(Jester: 12), recorded as the records' frame rate.

Splits of --format=folder / csv: split folders, a CSV 'split' column, or --val_fraction /
--test_fraction held out (seeded by video id); else one split gets every video.

Examples:
  python -m pipelines.prepare_data --format=ucf101 --videos_dir=UCF-101 \\
      --index=ucfTrainTestlist --split=train1,test1 --output_dir=data/ucf101 --flow=tvl1
  python -m pipelines.prepare_data --format=jester --videos_dir=20bn-jester-v1 \\
      --index=jester_csvs --split=train,validation --frame_size=original --output_dir=data/jester
  python -m pipelines.prepare_data --synthetic --videos_dir=/tmp/synth --output_dir=/tmp/synth_tfr
(more in tfvid.prep.prepare_dataset and docs/records.md).
"""
from __future__ import annotations

import os

from absl import app, flags

from pipelines.common import check_args, define_flag, parse_frame_size, run_job, usage_errors
from tfvid.lock import LockedError
from tfvid.prep.indexes import FORMATS
from tfvid.prep.prepare import FLOW_METHODS, LAYOUTS
from tfvid.prep.prepare_dataset import (format_summary, holdout_fractions, parse_splits,
                                        prepare_dataset, synthetic_source)

FLAGS = flags.FLAGS
define_flag("enum", "format", "ucf101",
            "Dataset index format: ucf101 (ucfTrainTestlist folder), hmdb51 (folder of "
            "<class>_test_split<N>.txt), kinetics (CSV label,youtube_id,time_start,time_end,"
            "split), ssv2 (folder of something-something-v2-*.json), jester (Jester or "
            "Something-Something v1: folder of jester-v1-*.csv / something-something-v1-*.csv "
            "'id;label' files; each video a folder of JPEG frames <videos_dir>/<id>/00001.jpg), "
            "folder (one subfolder per class, or <split>/<class> folders), csv "
            "(path,label[,split]).",
            enum_values=list(FORMATS))
define_flag("string", "videos_dir", None, "Folder holding the videos (jester: one frame folder "
            "per video id). With --synthetic: where "
            "the synthetic set is generated if missing (default "
            "<output_dir>/synthetic_videos).")
define_flag("string", "index", None, "Split files: the ucfTrainTestlist folder, the HMDB51 split "
            "folder, the Kinetics CSV (or a folder of CSVs), the SSv2 label folder or a "
            "path,label CSV; jester: the folder of jester-v1-*.csv (or "
            "something-something-v1-*.csv) files. For --format=folder it defaults to "
            "--videos_dir.")
define_flag("string", "split", None, "Split name(s), comma-separated. Defaults: ucf101/hmdb51 "
            "'train1,test1', kinetics 'train,val', ssv2 and jester 'train,validation' (jester "
            "test lists are unlabeled); required for "
            "folder and csv: the split folder / split column value, or any name when the "
            "index has no split information (then several splits need --val_fraction / "
            "--test_fraction).")
define_flag("float", "val_fraction", 0.0, "folder/csv indexes without split information: "
            "fraction of the videos held out for the validation split (the requested split "
            "named val/valid/validation/dev, else 'val'), chosen by a seeded hash of the video "
            "id; the other requested split gets the videos not held out.", lower_bound=0.0,
            upper_bound=0.99)
define_flag("float", "test_fraction", 0.0, "Like --val_fraction, for the split named "
            "test/testing (else 'test').", lower_bound=0.0, upper_bound=0.99)
define_flag("integer", "holdout_seed", 0, "Seed of the --val_fraction/--test_fraction "
            "assignment.")
define_flag("integer", "shuffle_seed", 0, "Seed of the video order before sharding, so every "
            "shard mixes the classes (recorded in the manifest); negative keeps index order.")
define_flag("string", "output_dir", None, "Where shards, frame folders, list files, rejects and "
            "summaries are written.")
define_flag("integer", "num_shards", 8, "TFRecord shards per split (videos are balanced by "
            "size).", lower_bound=1)
define_flag("enum", "flow", "none",
            "Optical flow to store: none, tvl1 (TSN's choice, ~1.3 s per frame pair on 2 "
            "cores), dis (~5 ms) or farneback (~30 ms).", enum_values=list(FLOW_METHODS))
define_flag("float", "flow_bound", 20.0, "Flow clip bound in pixels; stored as "
            "round(127.5 + 127.5/bound * v) (TSN: 20).", lower_bound=1e-3)
define_flag("integer", "workers", os.cpu_count() or 1, "Decoding processes (default: all cores; "
            "1 runs inline).", lower_bound=1)
define_flag("string", "frame_size", "340x256", "Stored frame size: WIDTHxHEIGHT (TSN: 340x256), "
            "shortN to resize the short side to N keeping the aspect ratio (e.g. "
            "short256), or 'original' (frame folders of --format=jester: their JPEG files "
            "are stored unchanged).")
define_flag("float", "fps", 0.0, "Resample videos to this frame rate; 0 keeps every frame.",
            lower_bound=0.0)
define_flag("float", "frame_folder_fps", 12.0, "Frame rate of videos stored as folders of "
            "frame images (--format=jester; Jester and Something-Something v1: 12), recorded "
            "as the records' frame rate.", lower_bound=1e-3)
define_flag("enum", "layout", "tfrecord",
            "tfrecord (sharded SequenceExamples), frames (img_00001.jpg folders + "
            "<split>.list, as TSN and mmaction2 read) or both.", enum_values=list(LAYOUTS))
define_flag("integer", "jpeg_quality", 90, "JPEG quality of the stored RGB frames.",
            lower_bound=1, upper_bound=100)
define_flag("string", "classes_file", None, "Optional class list (one name per line, index "
            "order) overriding the one derived from the index.")
define_flag("bool", "synthetic", False, "Prepare the built-in synthetic dataset (UCF101 "
            "layout): generate it under --videos_dir if missing, then read it as "
            "--format=ucf101.")
define_flag("integer", "synthetic_classes", None, "Classes of the generated synthetic set "
            "(default: the generator's).", lower_bound=2)
define_flag("integer", "synthetic_videos_per_class", None, "Videos per class of the generated "
            "synthetic set (at least 4: one per group; default: the generator's).",
            lower_bound=1)
define_flag("bool", "progress", True, "Show a progress bar.")


def main(argv):
    check_args(argv, "output_dir")
    if FLAGS.synthetic and FLAGS.synthetic_classes:
        from tfvid.prep.synthetic import check_num_classes
        with usage_errors():
            check_num_classes(FLAGS.synthetic_classes, name="--synthetic_classes")
    frame_size, short_side = parse_frame_size(FLAGS.frame_size)
    fmt, videos_dir, index = FLAGS.format, FLAGS.videos_dir, FLAGS.index
    if FLAGS.synthetic:
        fmt = "ucf101"
        videos_dir, index = synthetic_source(
            videos_dir or os.path.join(FLAGS.output_dir, "synthetic_videos"),
            FLAGS.synthetic_classes, FLAGS.synthetic_videos_per_class)
    elif not videos_dir:
        raise app.UsageError("--videos_dir is required (or pass --synthetic)")
    elif not index and fmt != "folder":
        raise app.UsageError(f"--index is required for --format={fmt}")
    with usage_errors():
        splits = parse_splits(FLAGS.split, fmt)
        holdout = holdout_fractions(splits, FLAGS.val_fraction, FLAGS.test_fraction)
    try:
        summaries = prepare_dataset(
            fmt, videos_dir=videos_dir, index=index, splits=splits, output_dir=FLAGS.output_dir,
            classes_file=FLAGS.classes_file, holdout=holdout, holdout_seed=FLAGS.holdout_seed,
            num_shards=FLAGS.num_shards, frame_size=frame_size, short_side=short_side,
            fps=FLAGS.fps or None, flow=FLAGS.flow, flow_bound=FLAGS.flow_bound,
            layout=FLAGS.layout, workers=FLAGS.workers, jpeg_quality=FLAGS.jpeg_quality,
            progress=FLAGS.progress, frame_folder_fps=FLAGS.frame_folder_fps,
            shuffle_seed=FLAGS.shuffle_seed if FLAGS.shuffle_seed >= 0 else None)
    except (ValueError, OSError, LockedError) as e:  # bad index/output dir, disk full, in use
        raise SystemExit(f"prepare_data: error: {e}") from e
    print("\n".join(format_summary(s) for s in summaries))


def run():
    """Console-script entry point (tfvid-prepare-data)."""
    run_job(main)


if __name__ == "__main__":
    run()
