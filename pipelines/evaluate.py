"""Evaluate a trained model on TFRecords with the multi-view test protocol.

    python -m pipelines.evaluate --model_dir=runs/tsn_rgb --data=data/ucf101/test-*.tfrecord
    tfvid-evaluate --model_dir=runs/tsn_rgb --data=test.list --num_crops=1 --view_batch=4

Rebuilds the model from model_dir/run_config.json (written by the train job), restores the
latest checkpoint (or model_dir/final.weights.h5), runs the model's paper test protocol (its
spec's test_segments, test_crops and test view side, tfvid.eval.run_protocol; --num_segments,
--num_crops and --input_size override them; the logic is tfvid.eval.run's) and writes to
--output_dir (default model_dir/eval): metrics.json, scores.npz (input of the fuse job),
confusion.png, confusion.csv, per_class.csv, bad_videos.tsv, and for a VideoMap run with
attention attention.png (a0 over time for a few videos, by class). Default protocols: TSN 25
snippets x 10 crops (docs/tsn.md); StNet T = 25 super-images, one centre crop of 256 x 256 for
a run trained at 224 (the model rebuilt at 256 with the trained weights; docs/stnet.md);
dynamic image networks MDI windows over the whole video, one centre crop
(docs/dynamic_images.md); DIN / VideoMap the training T frames, 10 crops (one view on cached
features). Models of TFVID_PLUGINS modules are known too (see pipelines.train).

Trust the default path:
  * the shards are checked first (tfvid.prep.completeness.check_shards: missing or truncated
    shards of a prepared split stop the job, naming them, unless --allow_incomplete); a
    DataLossError met while reading still names the shard (verify_records);
  * --bad_data=skip (default): a video that cannot be scored (label outside [0, num_classes)
    and not -1, a corrupt frame, a flow count mismatch) is left out, the rest is evaluated and
    written, and the bad ones are listed in metrics.json 'bad_videos' and bad_videos.tsv;
    --bad_data=fail stops at the first one, naming it. Unlabeled videos (label -1) are not bad:
    they are scored (scores.npz) and left out of the metrics;
  * StNet in test mode (--short_videos=fit, default): a video too short for --num_segments
    super-images of N frames gets the largest T that it holds without wrapping, never below
    the training T (tfvid.data.sampling.stnet_test_segments); metrics.json 'protocol' records
    the rule ('short_video_rule') and the short videos, and a warning names them.
"""
from __future__ import annotations

from absl import flags

from pipelines.common import check_args, define_flag, flag_value, resolve_files, run_job
from tfvid.eval.attention import plot_attention  # noqa: F401  (its home before)
from tfvid.eval.run import evaluate_run
from tfvid.eval.run_protocol import short_video_rule as _test_sampler  # noqa: F401  (its name
#                                                       here before, used by tests)
from tfvid.models.spec import load_plugins
from tfvid.train.run_dir import read_run_config

FLAGS = flags.FLAGS
load_plugins()   # TFVID_PLUGINS: modules registering model specs

define_flag("string", "model_dir", None, "Training directory with run_config.json and checkpoints.")
define_flag("string", "data", None, "TFRecord files: comma-separated globs, directories or .list "
            "files.")
define_flag("enum", "mode", "test", "test: --num_segments snippets (25); val: the training "
            "sampling.", enum_values=["test", "val"])
define_flag("integer", "num_segments", None, "Snippets per video (default: the model's test "
            "protocol in test mode, e.g. 25 for TSN and StNet; the training value in val mode).")
define_flag("enum", "num_crops", None, "Views per snippet: 1 centre, 3, or 10 (corners + centre, "
            "and flips); default: the model's test protocol (TSN 10; StNet, dynamic images 1).",
            enum_values=["1", "3", "10"])
define_flag("integer", "input_size", None, "Spatial side of the test views (default: the "
            "model's test protocol: the training side, StNet 256 for a run trained at 224, "
            "its weights loaded into the model rebuilt at that side).")
define_flag("integer", "batch_size", 1, "Videos per batch.")
define_flag("integer", "view_batch", 10, "At most this many clips (videos x views) per forward "
            "pass.")
define_flag("string", "output_dir", None, "Where results go (default model_dir/eval).")
define_flag("string", "checkpoint", None, "A checkpoint prefix or .weights.h5 file (default: "
            "latest).")
define_flag("string", "classes", None, "Class names file (one per line); default run_config "
            "'class_names', model_dir/classes.txt or classes.txt beside the data.")
define_flag("enum", "bad_data", "skip", "A video that cannot be scored (label outside "
            "[0, num_classes) and not -1, corrupt frames, flow count mismatch): skip = leave it "
            "out, evaluate the rest and list it in metrics.json 'bad_videos' and "
            "bad_videos.tsv; fail = stop at the first one, naming it.",
            enum_values=["skip", "fail"])
define_flag("bool", "allow_incomplete", False, "Evaluate a prepared split with missing or "
            "truncated shards (tfvid.prep.completeness.check_shards; warned about, a truncated "
            "shard read up to its last complete record) instead of stopping.")
define_flag("enum", "short_videos", "fit", "StNet test sampling of videos shorter than "
            "test segments x frames per segment: fit = the largest T <= --num_segments that "
            "the video holds without wrapping, never below the training T; wrap = always "
            "--num_segments (the reference: frames wrap around).", enum_values=["fit", "wrap"])

def evaluate_model_dir(model_dir: str, data: str, *, mode: str = "test",
                       num_segments: int | None = None, num_crops: int | None = None,
                       input_size: int | None = None, **kwargs) -> dict:
    """The whole job as a function: `data` (comma-separated globs, directories, .list files)
    resolved, then tfvid.eval.run.evaluate_run (keywords as there)."""
    read_run_config(model_dir)       # a missing run is named before the data
    return evaluate_run(model_dir, resolve_files(data, "data"), mode=mode,
                        num_segments=num_segments, num_crops=num_crops, input_size=input_size,
                        **kwargs)


def main(argv):
    check_args(argv, "model_dir", "data")
    # flag_value: this job's defaults even when another job defined a shared flag first.
    evaluate_model_dir(FLAGS.model_dir, FLAGS.data, mode=flag_value("mode", "test"),
                       num_segments=flag_value("num_segments", None),
                       num_crops=_int_or_none(flag_value("num_crops", None)),
                       input_size=flag_value("input_size", None),
                       batch_size=flag_value("batch_size", 1),
                       view_batch=flag_value("view_batch", 10),
                       output_dir=flag_value("output_dir", None),
                       checkpoint=flag_value("checkpoint", None),
                       classes_file=flag_value("classes", None),
                       bad_data=flag_value("bad_data", "skip"),
                       allow_incomplete=bool(flag_value("allow_incomplete", False)),
                       short_videos=flag_value("short_videos", "fit"))


def _int_or_none(value):
    return None if value is None else int(value)


def run():
    run_job(main)


if __name__ == "__main__":
    run()
