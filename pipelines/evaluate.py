"""Evaluate a trained model on TFRecords with the multi-view test protocol.

    python -m pipelines.evaluate --model_dir=runs/tsn_rgb --data=data/ucf101/test-*.tfrecord
    tfvid-evaluate --model_dir=runs/tsn_rgb --data=test.list --num_crops=1 --view_batch=4

Rebuilds the model from model_dir/run_config.json (written by the train job), restores the
latest checkpoint (or model_dir/final.weights.h5), runs the model's paper test protocol (its
spec's test_segments and test_crops, tfvid.models.spec; --num_segments and --num_crops
override them) and writes to --output_dir (default model_dir/eval): metrics.json, scores.npz
(input of the fuse job), confusion.png, confusion.csv, per_class.csv, bad_videos.tsv, and for a
VideoMap run with attention attention.png (a0 over time for a few videos, by class).
Default protocols: TSN 25 snippets x 10 crops (docs/tsn.md); StNet T = 25 super-images, one
centre crop (docs/stnet.md); dynamic image networks MDI windows over the whole video, one
centre crop (docs/dynamic_images.md); DIN / VideoMap the training T frames, 10 crops (one view
on cached features). Models of TFVID_PLUGINS modules are known too (see pipelines.train).

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

import dataclasses
import os

from absl import flags, logging

from pipelines.common import check_args, define_flag, flag_value, resolve_files, run_job
from tfvid.models.spec import load_plugins

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

SHORT_VIDEO_IDS = 10   # short videos named in the warning and in metrics.json


def _check_data(files: list[str], allow_incomplete: bool) -> list[str]:
    """tfvid.prep.completeness.check_shards on TFRecord shards (not on raw-frame .list files):
    ValueError naming missing or truncated shards; returns its warnings (logged)."""
    if all(f.endswith(".list") for f in files):
        return []
    from tfvid.prep.completeness import check_shards
    warnings = list(check_shards(files, allow_incomplete=allow_incomplete) or [])
    for w in warnings:
        logging.warning("%s", w)
    return warnings


def _test_sampler(sampler, cfg: dict, mode: str, short_videos: str):
    """In test mode, StNet's short-video rule (StNetSampler.min_segments = the training T)
    unless short_videos == 'wrap'. Other samplers and modes are returned as they are."""
    if mode != "test" or short_videos == "wrap" or not hasattr(sampler, "min_segments"):
        return sampler
    trained = int(cfg.get("num_segments") or sampler.num_segments)
    return dataclasses.replace(sampler, min_segments=max(1, trained))


def _name_lost_data(files: list[str], err: Exception):
    """A DataLossError during evaluation names no file: find the truncated or corrupt shard
    with verify_records (which raises naming it); otherwise re-raise with the file list."""
    import tensorflow as tf
    from tfvid.data.pipeline import verify_records

    record_files = [f for f in files if not f.endswith(".list")]
    if record_files:
        verify_records(record_files)          # raises DataLossError("<path>: ...")
    raise tf.errors.DataLossError(None, None, f"{err.message} (reading {', '.join(files)}; "
                                  "verify_records found no bad shard)") from err


def evaluate_model_dir(model_dir: str, data: str, *, mode: str = "test",
                       num_segments: int | None = None, num_crops: int | None = None,
                       batch_size: int = 1, view_batch: int = 10,
                       output_dir: str | None = None, checkpoint: str | None = None,
                       classes_file: str | None = None, progress: bool = True,
                       bad_data: str = "skip", allow_incomplete: bool = False,
                       short_videos: str = "fit") -> dict:
    """The whole job as a function; returns the summary written to metrics.json.

    bad_data: 'skip' (videos that cannot be scored are left out and listed in metrics.json
    'bad_videos' and bad_videos.tsv; the rest is evaluated and written) or 'fail' (stop at the
    first one with a ValueError naming it). num_segments / num_crops None: the model spec's test
    protocol (test_segments, test_crops; one view on cached features). Unlabeled videos (label -1) are scored and left out
    of the metrics, as before. allow_incomplete: passed to
    tfvid.prep.completeness.check_shards, run before anything else. short_videos: 'fit' (StNet
    test mode: see tfvid.data.sampling.stnet_test_segments) or 'wrap'.
    """
    import tensorflow as tf

    from tfvid.data import build_dataset
    from tfvid.eval import metrics, plots, protocol
    from tfvid.train import run_dir

    if bad_data not in protocol.BAD_DATA:
        raise ValueError(f"bad_data must be one of {protocol.BAD_DATA}, got {bad_data!r}")
    if short_videos not in ("fit", "wrap"):
        raise ValueError(f"short_videos must be 'fit' or 'wrap', got {short_videos!r}")
    cfg = run_dir.read_run_config(model_dir)
    files = resolve_files(data, "data")
    data_warnings = _check_data(files, allow_incomplete)
    num_classes = int(cfg["num_classes"])
    spec = run_dir.model_spec(cfg)
    features = spec.input_kind_of(cfg) == "features"
    if num_crops is None or features:          # cached features: one view
        num_crops = spec.test_protocol(cfg)[1]
    # A variable time axis lets a TSN trained on 3 segments run 25 test snippets; the spec
    # says when the time axis is fixed (e.g. TSN's 'weighted' consensus, one weight per K).
    variable = spec.is_variable_time(cfg)
    model = run_dir.build_model(cfg, num_segments=None if variable else run_dir.TRAINED)
    loaded = run_dir.restore(model, model_dir, checkpoint)
    logging.info("restored %s", loaded)
    sampler = _test_sampler(run_dir.sampler_from_config(cfg, mode, num_segments), cfg, mode,
                            short_videos)
    if features:
        source = {"feature": cfg.get("feature")}
    else:
        source = {"modality": cfg.get("modality", "rgb"), "num_crops": num_crops,
                  "backbone": cfg.get("backbone", "resnet50")}
    dataset = build_dataset(files, sampler=sampler, mode=mode, batch_size=batch_size,
                            input_size=cfg.get("input_size", 224), repeat=False,
                            num_classes=num_classes, **source,
                            # --allow_incomplete: a truncated shard is read up to its last
                            # complete record (check_shards warned); otherwise it stops the job.
                            bad_data="skip" if allow_incomplete else "mark")
    names = run_dir.class_names(cfg, model_dir, data_files=files, classes_file=classes_file)
    try:
        result = protocol.evaluate_videos(model, dataset, view_batch=view_batch,
                                          progress=progress, class_names=names,
                                          num_classes=num_classes, bad_data=bad_data)
    except tf.errors.DataLossError as err:
        _name_lost_data(files, err)
    output_dir = output_dir or os.path.join(model_dir, "eval")
    protocol_info = {"model_dir": model_dir, "checkpoint": loaded, "data": files, "mode": mode,
                     "sampler": sampler.config(), "num_crops": num_crops, "bad_data": bad_data}
    if data_warnings:
        protocol_info["data_warnings"] = data_warnings
    if hasattr(sampler, "short_video_rule") and mode == "test":
        requested = sampler.test_segments
        short = [(i, int(t)) for i, t in zip(result.scores.ids.tolist(),
                                             result.num_steps.tolist()) if t < requested]
        protocol_info["short_video_rule"] = sampler.short_video_rule()
        protocol_info["short_videos"] = {
            "count": len(short), "segments": requested,
            "examples": [{"id": i, "segments": t} for i, t in short[:SHORT_VIDEO_IDS]]}
        if short:
            logging.warning("%d videos are too short for %d segments of %d frames: evaluated "
                            "with fewer segments (%s), e.g. %s", len(short), requested,
                            sampler.frames_per_segment, sampler.short_video_rule(),
                            ", ".join(f"{i} (T={t})" for i, t in short[:SHORT_VIDEO_IDS]))
    if result.bad_videos:
        logging.warning("%d bad videos left out of the scores and metrics (listed in %s): %s",
                        len(result.bad_videos), os.path.join(output_dir, "bad_videos.tsv"),
                        protocol.describe_bad_videos(result.bad_videos))
    summary = plots.write_report(result.scores, output_dir, extra={"protocol": protocol_info},
                                 bad_videos=result.bad_videos,
                                 title=f"{cfg['model']} {cfg.get('modality', '')} ({mode})")
    if _has_layer(model, ATTENTION_LAYER):     # VideoMap with attention: a0 over time
        plot_attention(model, dataset, names, os.path.join(output_dir, "attention.png"),
                       title=f"{cfg['model']} {cfg.get('modality', '')}: attention a0 over time")
    print(metrics.format_summary(summary))
    print(f"results written to {output_dir}")
    return summary


ATTENTION_LAYER = "attention_a0"
ATTENTION_VIDEOS = 6     # videos drawn in attention.png (different classes first)


def _has_layer(model, name: str) -> bool:
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
    import numpy as np

    from tfvid.eval import plots
    from tfvid.models.videomap import videomap_attention

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


def main(argv):
    check_args(argv, "model_dir", "data")
    # flag_value: this job's defaults even when another job defined a shared flag first.
    evaluate_model_dir(FLAGS.model_dir, FLAGS.data, mode=flag_value("mode", "test"),
                       num_segments=flag_value("num_segments", None),
                       num_crops=_int_or_none(flag_value("num_crops", None)),
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
