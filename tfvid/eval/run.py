"""Evaluate a training run on TFRecords with its model's test protocol (pipelines/evaluate.py is
this module's flag list).

    summary = evaluate_run("runs/tsn_rgb", ["data/ucf101/test-0-of-4.tfrecord", ...])

Rebuilds the model from model_dir/run_config.json, restores the latest checkpoint (or
final.weights.h5), runs the model's default test protocol (tfvid.eval.run_protocol: the spec's
test segments, crops and test view side; arguments override them) and writes to output_dir
(default model_dir/eval): metrics.json (with the protocol), scores.npz, confusion.png,
confusion.csv, per_class.csv, bad_videos.tsv and, for a VideoMap run with attention,
attention.png (tfvid.eval.attention).

Trust the default path: the shards are checked first (tfvid.prep.completeness.check_shards);
a DataLossError met while reading still names the shard (verify_records); bad videos follow
bad_data ('skip': left out and listed, 'fail': stop naming the first); StNet's short-video
rule ('fit') is recorded in metrics.json 'protocol' with the short videos.
"""
from __future__ import annotations

import logging
import os

import tensorflow as tf

from tfvid.data import build_dataset
from tfvid.eval import metrics, plots, protocol
from tfvid.eval.attention import ATTENTION_LAYER, has_layer, plot_attention
from tfvid.eval.run_protocol import default_protocol
from tfvid.train import run_dir

log = logging.getLogger(__name__)

SHORT_VIDEO_IDS = 10   # short videos named in the warning and in metrics.json
SHORT_VIDEOS = ("fit", "wrap")


def check_data(files: list[str], allow_incomplete: bool) -> list[str]:
    """tfvid.prep.completeness.check_shards on TFRecord shards (not on raw-frame .list files):
    ValueError naming missing or truncated shards; returns its warnings (logged)."""
    if all(f.endswith(".list") for f in files):
        return []
    from tfvid.prep.completeness import check_shards
    warnings = list(check_shards(files, allow_incomplete=allow_incomplete) or [])
    for w in warnings:
        log.warning("%s", w)
    return warnings


def name_lost_data(files: list[str], err: Exception):
    """A DataLossError during evaluation names no file: find the truncated or corrupt shard
    with verify_records (which raises naming it); otherwise re-raise with the file list."""
    from tfvid.data.pipeline import verify_records

    record_files = [f for f in files if not f.endswith(".list")]
    if record_files:
        verify_records(record_files)          # raises DataLossError("<path>: ...")
    raise tf.errors.DataLossError(None, None, f"{err.message} (reading {', '.join(files)}; "
                                  "verify_records found no bad shard)") from err


def short_video_info(sampler, result, mode: str) -> dict:
    """metrics.json protocol entries of StNet's short-video rule ('short_video_rule',
    'short_videos'); a warning names the short videos. {} for other samplers."""
    if not hasattr(sampler, "short_video_rule") or mode != "test":
        return {}
    requested = sampler.test_segments
    short = [(i, int(t)) for i, t in zip(result.scores.ids.tolist(),
                                         result.num_steps.tolist()) if t < requested]
    if short:
        log.warning("%d videos are too short for %d segments of %d frames: evaluated with "
                    "fewer segments (%s), e.g. %s", len(short), requested,
                    sampler.frames_per_segment, sampler.short_video_rule(),
                    ", ".join(f"{i} (T={t})" for i, t in short[:SHORT_VIDEO_IDS]))
    return {"short_video_rule": sampler.short_video_rule(),
            "short_videos": {"count": len(short), "segments": requested,
                             "examples": [{"id": i, "segments": t}
                                          for i, t in short[:SHORT_VIDEO_IDS]]}}


def evaluate_run(model_dir: str, files: list[str], *, mode: str = "test",
                 num_segments: int | None = None, num_crops: int | None = None,
                 input_size: int | None = None, batch_size: int = 1, view_batch: int = 10,
                 output_dir: str | None = None, checkpoint: str | None = None,
                 classes_file: str | None = None, progress: bool = True,
                 bad_data: str = "skip", allow_incomplete: bool = False,
                 short_videos: str = "fit") -> dict:
    """The evaluate job on resolved `files`; returns the summary written to metrics.json.

    num_segments / num_crops / input_size None: the model spec's test protocol (test_segments,
    test_crops, the test view side `ModelSpec.test_input_size_of`; one view on cached
    features). The model is rebuilt at the view side (StNet: 256 for a run trained at 224)
    with a variable time axis when the spec allows it. bad_data: 'skip' or 'fail';
    allow_incomplete: passed to check_shards, run before anything else; short_videos: 'fit'
    (StNet test mode: see tfvid.data.sampling.stnet_test_segments) or 'wrap'.
    """
    if bad_data not in protocol.BAD_DATA:
        raise ValueError(f"bad_data must be one of {protocol.BAD_DATA}, got {bad_data!r}")
    if short_videos not in SHORT_VIDEOS:
        raise ValueError(f"short_videos must be 'fit' or 'wrap', got {short_videos!r}")
    if input_size is not None and int(input_size) < 1:
        raise ValueError(f"--input_size must be >= 1, got {input_size}")
    cfg = run_dir.read_run_config(model_dir)
    data_warnings = check_data(files, allow_incomplete)
    num_classes = int(cfg["num_classes"])
    spec = run_dir.model_spec(cfg)
    proto = default_protocol(cfg, mode=mode, num_segments=num_segments, num_crops=num_crops,
                             input_size=input_size, short_videos=short_videos)
    # A variable time axis lets a TSN trained on 3 segments run 25 test snippets; the spec
    # says when the time axis is fixed (e.g. TSN's 'weighted' consensus, one weight per K).
    model = run_dir.build_model(
        cfg, num_segments=None if spec.is_variable_time(cfg) else run_dir.TRAINED,
        input_size=None if proto.input_size == cfg.get("input_size") else proto.input_size)
    try:
        loaded = run_dir.restore(model, model_dir, checkpoint)
    except ValueError as e:
        if proto.input_size == cfg.get("input_size"):
            raise
        raise ValueError(f"{e} (the model was rebuilt at the test input size "
                         f"{proto.input_size}; give --input_size={cfg.get('input_size')})"
                         ) from None
    log.info("restored %s", loaded)
    if proto.input_size is None:
        source = {"feature": cfg.get("feature")}
    else:
        source = {"modality": cfg.get("modality", "rgb"), "num_crops": proto.num_crops,
                  "backbone": spec.normalization_backbone(cfg), "input_size": proto.input_size,
                  "scale_size": proto.scale_size}
    dataset = build_dataset(files, sampler=proto.sampler, mode=mode, batch_size=batch_size,
                            repeat=False, num_classes=num_classes, **source,
                            # --allow_incomplete: a truncated shard is read up to its last
                            # complete record (check_shards warned); otherwise it stops the job.
                            bad_data="skip" if allow_incomplete else "mark")
    names = run_dir.class_names(cfg, model_dir, data_files=files, classes_file=classes_file)
    try:
        result = protocol.evaluate_videos(model, dataset, view_batch=view_batch,
                                          progress=progress, class_names=names,
                                          num_classes=num_classes, bad_data=bad_data)
    except tf.errors.DataLossError as err:
        name_lost_data(files, err)
    output_dir = output_dir or os.path.join(model_dir, "eval")
    protocol_info = {"model_dir": model_dir, "checkpoint": loaded, "data": files, "mode": mode,
                     **proto.describe(), "bad_data": bad_data}
    if data_warnings:
        protocol_info["data_warnings"] = data_warnings
    protocol_info.update(short_video_info(proto.sampler, result, mode))
    if result.bad_videos:
        log.warning("%d bad videos left out of the scores and metrics (listed in %s): %s",
                    len(result.bad_videos), os.path.join(output_dir, "bad_videos.tsv"),
                    protocol.describe_bad_videos(result.bad_videos))
    summary = plots.write_report(result.scores, output_dir, extra={"protocol": protocol_info},
                                 bad_videos=result.bad_videos,
                                 title=f"{cfg['model']} {cfg.get('modality', '')} ({mode})")
    if has_layer(model, ATTENTION_LAYER):     # VideoMap with attention: a0 over time
        plot_attention(model, dataset, names, os.path.join(output_dir, "attention.png"),
                       title=f"{cfg['model']} {cfg.get('modality', '')}: attention a0 over time")
    print(metrics.format_summary(summary))
    print(f"results written to {output_dir}")
    return summary
