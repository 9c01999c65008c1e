"""Cached per-frame features as input (DIN, VideoMap; docs/architecture.md).

    feature_dimension(files, name)        D of FEATURE/<name>/floats, read once
    load_feature_record(serialized, ...)  one record -> its sampled rows, (T, D) or (1, T, D)

A feature record's m rows are its "frames": the sampler gives row indices over the m rows (one
row per step) and the sampled rows are gathered as they are (no decoding, cropping or
normalisation). Records come from tfvid.prep.extract_features (pipelines/extract_features.py)
or any SequenceExample with FEATURE/<name>/floats (tfvid.data.schema).
"""
from __future__ import annotations

import tensorflow as tf

from tfvid.data import schema
from tfvid.data.records import resolve_files
from tfvid.data.sampling import as_seed


def check_feature_args(sampler, mode, feature):
    if mode not in ("train", "val", "test"):
        raise ValueError(f"mode must be 'train', 'val' or 'test', got {mode!r}")
    if not isinstance(feature, str) or not feature or "/" in feature:
        raise ValueError(f"build_dataset: feature must be a feature name such as 'rgb' "
                         f"(FEATURE/<name>/floats), got {feature!r}")
    if sampler.frames_per_step() != 1:
        raise ValueError(f"build_dataset: features {feature!r} take one feature row per time "
                         f"step (new_length 1); the {sampler.name!r} sampler "
                         f"{sampler.config()} stacks {sampler.frames_per_step()} frames per "
                         f"step (use e.g. TSNSampler(8) or UniformSampler(T))")
    if sampler.variable_length or sampler.num_steps(mode) is None:
        raise ValueError(f"build_dataset: features {feature!r} need a sampler with a fixed T; "
                         f"the {sampler.name!r} sampler {sampler.config()} varies by video")


def feature_dimension(files, feature: str, *, max_records: int = 1000) -> int:
    """D of the cached features `feature`: FEATURE/<feature>/dimension of the first record
    (in file order) that holds them (the length of its first row when the context lacks the
    dimension). ValueError naming the files when none of the first `max_records` records
    holds them."""
    _, paths = resolve_files(files)
    dim_key, rows_key = schema.feature_dim_key(feature), schema.feature_key(feature)
    seen, first_names = 0, None
    for path in paths:
        records = tf.data.TFRecordDataset(path, compression_type="GZIP" if path.endswith(".gz")
                                          else "")
        try:
            for raw in records.take(max_records - seen):
                seen += 1
                ex = tf.train.SequenceExample.FromString(raw.numpy())
                ctx, lists = ex.context.feature, ex.feature_lists.feature_list
                if dim_key in ctx and ctx[dim_key].int64_list.value and \
                        ctx[dim_key].int64_list.value[0] > 0:
                    return int(ctx[dim_key].int64_list.value[0])
                if rows_key in lists and lists[rows_key].feature and \
                        lists[rows_key].feature[0].float_list.value:
                    return len(lists[rows_key].feature[0].float_list.value)
                if first_names is None:
                    first_names = sorted({k.split("/")[1] for k in list(ctx) + list(lists)
                                          if k.startswith("FEATURE/") and k.count("/") >= 2})
        except tf.errors.DataLossError:
            continue                    # a corrupt shard: build_dataset names it when read
        if seen >= max_records:
            break
    raise ValueError(f"no features {feature!r} (FEATURE/{feature}/floats) in the first {seen} "
                     f"records of {paths if len(paths) < 5 else files}; the first record holds "
                     f"features {first_names or []}")


def load_feature_record(serialized, name, dim, *, sampler, mode, seed, label_check):
    """One feature record -> (clip float32 (T, D) (train) or (1, T, D), ok, reason, id, label):
    the sampled rows of FEATURE/<name>/floats, zeros when the record is not ok (no rows,
    another dimension in its context or in a row, or a bad label). seed (train): a stateless
    seed, or a function of the record's id string giving one (the sampling seed is its first
    of three splits, as for frames)."""
    dim_key = schema.feature_dim_key(name)
    ctx, seq = tf.io.parse_single_sequence_example(
        serialized,
        {schema.ID: tf.io.FixedLenFeature([], tf.string, default_value=""),
         schema.LABEL_INDEX: tf.io.VarLenFeature(tf.int64),
         dim_key: tf.io.FixedLenFeature([], tf.int64, default_value=0)},
        {schema.feature_key(name): tf.io.VarLenFeature(tf.float32)})
    labels = tf.sparse.to_dense(ctx[schema.LABEL_INDEX])
    label = tf.cond(tf.size(labels) > 0, lambda: tf.cast(labels[0], tf.int32),
                    lambda: tf.constant(schema.NO_LABEL, tf.int32))
    rows = seq[schema.feature_key(name)]                       # sparse (m, max row length)
    m = tf.cast(rows.dense_shape[0], tf.int32)
    lengths = tf.math.bincount(tf.cast(rows.indices[:, 0], tf.int32), minlength=m, maxlength=m)
    ctx_dim = tf.cast(ctx[dim_key], tf.int32)
    has_rows = m > 0
    dim_ok = tf.logical_or(tf.equal(ctx_dim, 0), tf.equal(ctx_dim, dim))
    wrong = tf.not_equal(lengths, dim)
    rows_ok = tf.logical_not(tf.reduce_any(wrong))
    # the first row of another length (a sentinel keeps argmax defined when m = 0)
    bad_row = tf.argmax(tf.concat([tf.cast(wrong, tf.int32), [0]], 0), output_type=tf.int32)
    bad_length = tf.gather(tf.concat([lengths, [0]], 0), bad_row)
    label_ok, label_reason = label_check(label)
    shape_ok = has_rows & dim_ok & rows_ok
    ok = shape_ok & label_ok
    reasons = (
        (has_rows, tf.constant(f"no features {name!r} (FEATURE/{name}/floats is missing or "
                               f"empty)")),
        (dim_ok, tf.strings.join([f"features {name!r} have dimension ",
                                  tf.strings.as_string(ctx_dim),
                                  f" (FEATURE/{name}/dimension), expected {dim} (the first "
                                  f"record's)"])),
        (rows_ok, tf.strings.join([f"features {name!r}: row ", tf.strings.as_string(bad_row),
                                   " has ", tf.strings.as_string(bad_length),
                                   f" values, expected dimension {dim}"])),
        (label_ok, label_reason))
    reason = tf.constant("")
    for case_ok, case_reason in reversed(reasons):
        reason = tf.where(case_ok, reason, case_reason)
    s_sample = None
    if mode == "train":
        if callable(seed):                 # seed(video id) -> the video's stateless seed
            seed = seed(ctx[schema.ID])
        s_sample = tf.unstack(tf.random.experimental.stateless_split(as_seed(seed), 3))[0]
    idx = tf.reshape(sampler(tf.maximum(m, 1), mode, s_sample), [-1])      # (T,)
    clip = tf.cond(ok, lambda: tf.gather(tf.reshape(tf.sparse.to_dense(rows), [m, dim]), idx),
                   lambda: tf.zeros([tf.size(idx), dim], tf.float32))
    clip = tf.ensure_shape(clip, [sampler.num_steps(mode), dim])
    if mode != "train":
        clip = clip[None]
    return clip, ok, reason, ctx[schema.ID], label
