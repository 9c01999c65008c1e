"""The tf.data builder: files -> batches of normalised clips (docs/architecture.md).

    build_dataset(files, sampler=..., mode=...)   TFRecords or raw-frame folders -> batches
    preprocess_video(frames, sampler=..., ...)    the same transforms on one decoded video

build_dataset is three steps, each in its own module:
  source    which videos in which order (tfvid.data.source over tfvid.data.records): a row per
            video, training a new permutation of all videos each epoch, with the epoch;
  element   row -> {'clip', 'label', 'id', 'valid', 'problem'} (tfvid.data.elements): read
            the record or the sampled frame files, then the per-clip transform (tfvid.data.clips:
            sample -> decode only the sampled frames (train: only the crop window) -> stack ->
            flip + resize; val/test: evaluation views), or the sampled rows of cached features
            (tfvid.data.features);
  batch     batch (clips of varying T: tfvid.data.batching), then once per batch RGB
            differences and normalisation (`_finish`); with `data_service` the steps above run
            on tf.data service workers (tfvid.data.service).

Storage layouts (chosen from `files`):
  TFRecord shards   paths or glob patterns of tfvid SequenceExamples (schema.py), read by record
                    position (an index of the 12-byte record headers, `record_index`): one
                    serialized record per parallel read, never a buffer of records. Names ending
                    in .gz are read as GZIP (no random access: all shards are interleaved record
                    by record, then shuffled in `shuffle_buffer`).
  raw frames        `*.list` files (TSN/mmaction2) of `<video_dir> <num_frames> <label>` lines
                    (tfvid.data.records); only the sampled files are read.
  feature shards    build_dataset(..., feature=<name>): cached per-frame features
                    (FEATURE/<name>/floats); the sampled rows are the clip (DIN, VideoMap).

Randomness: every epoch e is a fresh permutation of ALL videos of the pipeline, from (seed,
pipeline, e); each video's random choices (frame offsets, crop, flip) come from (seed, video id,
e) (`tfvid.data.source.video_seed`), never from its position, so one seed reproduces a run, a
checkpointed iterator resumes it exactly, and a video's clip does not depend on the number of
pipelines or data-service workers.

Errors: no file matches a pattern, or an empty/malformed list file -> ValueError naming it. Bad
videos are marked (batch keys 'valid', 'problem'; see tfvid.data.elements), or with
bad_data='fail' raise tf.errors.InvalidArgumentError. A truncated uncompressed shard ->
tf.errors.DataLossError naming the shard and record when the dataset is built (bad_data='skip':
a warning, and the shard is read up to its last complete record); a corrupt record met while
reading (or a truncated GZIP shard) -> tf.errors.DataLossError without the file
(`verify_records(paths)` names it); a missing raw frame file -> tf.errors.NotFoundError naming
the file.
"""
from __future__ import annotations

import tensorflow as tf

from tfvid.data import service, source
from tfvid.data.augment import AUGMENTATIONS, check_augmentation  # noqa: F401
from tfvid.data.batching import batch_variable_length, cyclic_pad  # noqa: F401
from tfvid.data.clips import check_args as _check_args
from tfvid.data.clips import decode as _decode  # noqa: F401
from tfvid.data.clips import finish as _finish
from tfvid.data.clips import preprocess_video  # noqa: F401
from tfvid.data.elements import BAD_DATA, ElementReader
from tfvid.data.features import check_feature_args, feature_dimension
from tfvid.data.records import (FLOW_TEMPLATES, RGB_TEMPLATE, read_list_file,  # noqa: F401
                                record_index, resolve_files, verify_records)
from tfvid.data.records import frame_names as _frame_names  # noqa: F401
from tfvid.data.records import read_files as _read_files  # noqa: F401
from tfvid.data.records import read_record

__all__ = ["build_dataset", "preprocess_video", "read_list_file", "record_index",
           "verify_records", "feature_dimension", "cyclic_pad", "RGB_TEMPLATE",
           "FLOW_TEMPLATES", "BAD_DATA", "AUGMENTATIONS"]


def build_dataset(files, *, sampler, mode, modality="rgb", batch_size=8, input_size=224,
                  backbone="resnet50", num_crops=1, seed=0, input_context=None, repeat=None,
                  shuffle_buffer=64, drop_remainder=None, num_parallel_calls=tf.data.AUTOTUNE,
                  cache=False, kernels=None, num_classes=None, bad_data="mark", feature=None,
                  augmentation="multiscale_crop_flip", scale_size=None, data_service=None,
                  data_service_job=None, normalize=True):
    """Batches of {'clip', 'label', 'id', 'valid', 'problem'} from TFRecord shards or raw-frame
    list files, or (feature=<name>) of cached per-frame features from feature shards.

    files: path, glob pattern or a list of them (TFRecord shards, or `*.list` files).
    sampler: a tfvid.data.sampling sampler (indices (T, L) per video).
    mode: 'train' -> clip float32 (B, T, S, S, C) (`augmentation`: a crop and a flip);
          'val'/'test' -> (B, V, T, S, S, C), V = num_crops in {1 (centre), 3, 10}, crops of
          the frames scaled to the short side scale_size (None: input_size * 256 // 224, TSN;
          StNet's 256 test view of 340 x 256 frames trained at 224: scale_size=256).
    label int32 (B,) (-1 when a record has none); id string (B,); valid bool (B,); problem
    string (B,): "" for a valid element, else "video <id> (<where>): <reason>" with <where> the
    shard and record number within it (TFRecords) or the list file line / frame file (raw
    frames). An element is invalid when a sampled JPEG is not complete (no FFD8 start or FFD9
    end; checked before decoding, the clip is then zeros), when `num_classes` is given and its
    label is outside [0, num_classes), or when its flow and RGB frame counts disagree.
    Samplers whose T depends on the video (MDI) add 'num_steps' int32 (B,) (each video's true
    T) and pad every video by repeating its own steps cyclically (see `cyclic_pad`): in train
    to the sampler's max_windows (static T), otherwise to the longest video of the batch.
    augmentation (train): 'multiscale_crop_flip' (TSN: corner crops with scale jitter, resized
    to input_size) or 'random_crop_flip' (StNet's reader: a plain random input_size crop of the
    stored frame, resized only when the frame is smaller), then a flip with probability 1/2
    (flow: x inverted); one crop and flip per clip. A model's default: its spec's
    `augmentation` (tfvid.models.spec).
    input_context: a tf.distribute.InputContext: videos are sharded by pipeline and batch_size
    is the global batch size.
    repeat: None -> forever in train, once otherwise. drop_remainder: None -> train only.
    Order: training reads every epoch a fresh permutation of all videos of its pipeline
    (seeded by `seed` and the epoch); val/test read files and records in order. Each video's
    random choices come from (seed, video id, epoch) (module docstring). shuffle_buffer only
    applies to GZIP shards.
    cache: False, True (memory) or a file prefix; val/test: caches the serialized records /
    file list (training reads records by position and does not cache).
    kernels: use the fused uint8 flip+resize and normalisation kernels in training
    (tfvid.data.kernels; same result within 1 in 255 of the 8-bit scale). None: when they
    build on this machine; False: stock TensorFlow ops only.
    bad_data: 'mark' (default) invalid elements are marked (valid False, problem) and a
    truncated shard raises tf.errors.DataLossError naming it when the dataset is built;
    'skip' marks them too, and a truncated shard is logged and read up to its last complete
    record; 'fail' raises tf.errors.InvalidArgumentError with the problem text at the first
    invalid element (and DataLossError for a truncated shard).
    data_service: None, or a tf.data service dispatcher 'grpc://host:port' / 'host:port':
    reading, decoding, augmentation, batching and normalisation run on the service's workers
    with dynamic sharding (one split = one video of the source; tfvid.data.service), which must
    see the same file paths (and load tfvid.data.kernels when the fused kernels are on). The
    epochs, the per-epoch permutations and the per-video seeds are as above; the workers
    deliver batches in the order they finish them (no exact resume). data_service_job: the
    job name trainers share (each batch to one of them); None: a job per iterator. Uncompressed
    shards and list files only (a GZIP shard has no random access: ValueError).

    normalize: False leaves frame clips float32 on the 8-bit scale, before RGB differences and
    the backbone's normalisation (inputs of a uint8-input TFLite model, calibration sets).

    feature: None (frames), or the name of cached per-frame features (tfvid.data.features):
    the sampler gives row indices over a record's m feature rows (one row per step: a sampler
    with frames_per_step() > 1, or whose T depends on the video, is refused with ValueError);
    modality, backbone, input_size, num_crops, augmentation and kernels are ignored. clip
    float32 (B, T, D) in train, (B, 1, T, D) in val/test. D (static) is the
    FEATURE/<name>/dimension of the first record holding the features (`feature_dimension`,
    read once). A record lacking the features or of another dimension is invalid and follows
    `bad_data`. Order, seeds and exact resume are those of frame records.
    """
    if bad_data not in BAD_DATA:
        raise ValueError(f"bad_data must be one of {BAD_DATA}, got {bad_data!r}")
    check_augmentation(augmentation)
    if feature is not None:
        check_feature_args(sampler, mode, feature)
        channels = None
    else:
        channels = _check_args(sampler, modality, mode, num_crops, backbone, augmentation,
                               input_size, scale_size)
    training = mode == "train"
    repeat = training if repeat is None else repeat
    drop_remainder = training if drop_remainder is None else drop_remainder
    layout, paths = resolve_files(files)
    if feature is not None and layout != "tfrecord":
        raise ValueError(f"build_dataset: features {feature!r} are read from TFRecord shards, "
                         f"got list files {paths}")
    gzip = _check_compression(paths, files, data_service)
    num_pipes, pipe_id = 1, 0
    if input_context is not None:
        num_pipes, pipe_id = input_context.num_input_pipelines, input_context.input_pipeline_id
        batch_size = input_context.get_per_replica_batch_size(batch_size)
    reader = ElementReader(
        sampler=sampler, mode=mode, modality=modality, input_size=input_size,
        num_crops=num_crops, seed=int(seed), kernels=_use_kernels(kernels, training, feature),
        num_classes=None if num_classes is None else int(num_classes), bad_data=bad_data,
        augmentation=augmentation, feature=feature, scale_size=scale_size,
        feature_dim=None if feature is None else feature_dimension(paths, feature))
    order = source.order_seed(seed, pipe_id)
    if gzip:
        rows = source.gzip_records(paths, training=training, repeat=repeat, seed=seed,
                                   num_pipes=num_pipes, pipe_id=pipe_id,
                                   shuffle_buffer=shuffle_buffer,
                                   num_parallel_calls=num_parallel_calls)
    elif layout == "tfrecord":
        table = source.record_table(paths, bad_data=bad_data, num_pipes=num_pipes,
                                    pipe_id=pipe_id, files=files)
        rows = source.epochs(table, training=training, repeat=repeat and training, seed=order)
        rows = rows.map(lambda r: {**r, "serialized": read_record(r["path"], r["offset"])},
                        num_parallel_calls=num_parallel_calls, deterministic=True)
        rows = _cache_and_repeat(rows, training, cache, repeat)
    else:
        table = source.list_table(paths, num_pipes=num_pipes, pipe_id=pipe_id)
        rows = source.epochs(table, training=training, repeat=repeat and training, seed=order)
        rows = _cache_and_repeat(rows, training, cache, repeat)
    element = {"list": reader.list_row, "tfrecord": reader.frame_record}[layout]
    if feature is not None:
        element = reader.feature_record
    ds = rows.map(element, num_parallel_calls=num_parallel_calls, deterministic=True)
    ds = _batch(ds, reader, batch_size=batch_size, drop_remainder=drop_remainder,
                channels=channels, backbone=backbone, num_parallel_calls=num_parallel_calls,
                normalize=normalize)
    if data_service:
        ds = service.distribute(ds, data_service, job_name=data_service_job)
    return ds.prefetch(tf.data.AUTOTUNE)


def _check_compression(paths, files, data_service) -> bool:
    """True for GZIP shards; ValueError for a mix, or GZIP shards with a data service."""
    gz = [p.endswith(".gz") for p in paths]
    if any(gz) and not all(gz):
        raise ValueError(f"build_dataset: mix of GZIP (.gz) and uncompressed shards in {files}")
    if all(gz) and data_service:
        raise ValueError(f"build_dataset: data_service={data_service!r} needs uncompressed "
                         f"TFRecord shards or list files (videos are handed out one by one by "
                         f"record position; GZIP shards have no random access): {files}")
    return all(gz)


def _use_kernels(kernels, training, feature) -> bool:
    """The fused kernels apply to training frames only; None: where they build."""
    if feature is not None or not training:
        return False
    if kernels is None:
        from tfvid.data import kernels as fused
        return fused.available()
    return bool(kernels)


def _cache_and_repeat(rows, training, cache, repeat):
    """val/test: cache the rows (memory or a file prefix) and repeat them when asked
    (training repeats in the source, one permutation per epoch, and never caches)."""
    if training:
        return rows
    if cache:
        rows = rows.cache() if cache is True else rows.cache(str(cache))
    return rows.repeat() if repeat else rows


def _batch(ds, reader, *, batch_size, drop_remainder, channels, backbone, num_parallel_calls,
           normalize=True):
    """Elements -> batches with static clip shapes: (B, T, S, S, C) / (B, V, T, S, S, C), or
    (B, T, D) / (B, 1, T, D) for features; frames get `_finish` once per batch."""
    sampler, training, mode = reader.sampler, reader.training, reader.mode
    steps = sampler.num_steps(mode)
    if reader.feature is not None:
        ds = ds.batch(batch_size, drop_remainder=drop_remainder,
                      num_parallel_calls=num_parallel_calls, deterministic=True)
        shape = [steps, reader.feature_dim]
        shape = tf.TensorShape([None] + (shape if training else [1] + shape))
        return ds.map(lambda b: {**b, "clip": tf.ensure_shape(b["clip"], shape)},
                      num_parallel_calls=num_parallel_calls, deterministic=True)
    if sampler.variable_length:
        ds = batch_variable_length(ds, batch_size, drop_remainder,
                                   getattr(sampler, "max_windows", None) if training else None,
                                   num_parallel_calls)
    else:
        ds = ds.batch(batch_size, drop_remainder=drop_remainder,
                      num_parallel_calls=num_parallel_calls, deterministic=True)
    size = reader.input_size
    shape = [steps, size, size, channels]
    shape = tf.TensorShape([None] + (shape if training else [reader.num_crops] + shape))

    def finish(batch):
        if not normalize:
            clip = tf.cast(batch["clip"], tf.float32)
            return {**batch, "clip": tf.ensure_shape(clip, shape)}
        clip = _finish(batch["clip"], modality=reader.modality, backbone=backbone,
                       kernels=reader.kernels)
        return {**batch, "clip": tf.ensure_shape(clip, shape)}
    return ds.map(finish, num_parallel_calls=num_parallel_calls, deterministic=True)
