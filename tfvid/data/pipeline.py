"""The tf.data builder: files -> batches of normalised clips (docs/architecture.md).

    build_dataset(files, sampler=..., mode=...)   TFRecords or raw-frame folders -> batches
    preprocess_video(frames, sampler=..., ...)    the same transforms on one decoded video

Both run one recipe in two halves. Per clip (`_transform`): sample indices -> fetch the
sampled frames (encoded strings or decoded arrays) -> decode only those (train:
decode_and_crop_jpeg of the crop window) -> stack the L frames of a step on channels (uint8)
-> train: random flip + bilinear resize of the crop (in build_dataset one fused uint8 kernel,
tfvid.data.kernels, when it builds; else the uint8 flip, then TF's float resize); val/test:
evaluation views. Per batch (`_finish`, one op of each kind per batch): RGB differences ->
normalise (fused kernel on uint8 batches).

Storage layouts (chosen from `files`):
  TFRecord shards   paths or glob patterns of tfvid SequenceExamples (schema.py); names ending
                    in .gz are read as GZIP.
  raw frames        `*.list` files (TSN/mmaction2) whose lines are
                    `<video_dir> <num_frames> <label>`, video_dir relative to the list's folder,
                    holding img_00001.jpg ... (1-based) and n-1 grayscale flow_x_00001.jpg /
                    flow_y_00001.jpg. Only the sampled files are read (tf.io.read_file).
  feature shards    build_dataset(..., feature=<name>): TFRecord shards of cached per-frame
                    features (FEATURE/<name>/floats, pipelines/extract_features.py); the
                    sampled rows are the clip, (B, T, D) / (B, 1, T, D) (DIN, VideoMap).

Order and randomness: training reads every epoch a fresh permutation of ALL videos of its
pipeline (stateless_shuffle seeded by fold_in([seed, 1], pipeline id) and the epoch), so batches
mix classes even when shards are class-sorted; TFRecords are read by record position (an index
of the 12-byte record headers, built once per shard, `record_index`), holding one serialized
record per parallel read, never a buffer of records (GZIP shards, which have no random access,
fall back to interleaving all shards record by record plus `shuffle_buffer`). Every training
example gets the stateless seed fold_in([seed, 0], pipeline id, element index), split into
sampling, crop and flip seeds; all parallel steps keep their order. So one seed reproduces a
run exactly, and the stream depends on the element position only: a checkpointed iterator
resumes it exactly.

Errors: no file matches a pattern, or an empty/malformed list file -> ValueError naming it.
Bad videos are marked, not raised (batch keys 'valid' bool (B,) and 'problem' string (B,):
"video <id> (<shard> record <k> | <list> line <k>): <reason>"): a sampled JPEG that is not
complete (no FFD8 start / FFD9 end; checked before decoding, the clip is zeros), a label outside
[0, num_classes) (when num_classes is given), a record whose flow count is not n-1.
bad_data='fail' raises tf.errors.InvalidArgumentError with that text instead. A truncated
uncompressed TFRecord shard -> tf.errors.DataLossError naming the shard and record when the
dataset is built (bad_data='skip': a warning, and the shard is read up to its last complete
record); a corrupt record met while reading (or a truncated GZIP shard) ->
tf.errors.DataLossError without the file (`verify_records(paths)` names it); a missing raw
frame file -> tf.errors.NotFoundError naming the file.
"""
from __future__ import annotations

import logging
import os

import tensorflow as tf

from tfvid.data import augment, modality as mod, schema
from tfvid.data.sampling import as_seed

RGB_TEMPLATE = "img_"          # raw layout: img_00001.jpg
FLOW_TEMPLATES = ("flow_x_", "flow_y_")
log = logging.getLogger("tfvid.data")


# ----------------------------------------------------------------------------- shared core
def _decode(encoded, channels, window=None):
    """(T, L) JPEG strings -> uint8 (T, L, h, w, channels); `window` [y, x, h, w] crops.

    With a static (T, L) the frames are decoded by one op each (no tf.map_fn loop: less
    per-clip overhead inside tf.data); otherwise by tf.map_fn.
    """
    if window is None:
        fn = lambda s: tf.io.decode_jpeg(s, channels=channels)  # noqa: E731
    else:
        fn = lambda s: tf.io.decode_and_crop_jpeg(s, window, channels=channels)  # noqa: E731
    if encoded.shape.is_fully_defined():
        images = tf.stack([fn(s) for s in tf.unstack(tf.reshape(encoded, [-1]))])
    else:
        images = tf.map_fn(fn, tf.reshape(encoded, [-1]),
                           fn_output_signature=tf.TensorSpec([None, None, channels], tf.uint8))
    return tf.reshape(images, tf.concat([tf.shape(encoded), tf.shape(images)[1:]], 0))


def _check_args(sampler, modality, mode, num_crops, backbone):
    mod.check_modality(modality)
    if mode not in ("train", "val", "test"):
        raise ValueError(f"mode must be 'train', 'val' or 'test', got {mode!r}")
    if mode != "train" and num_crops not in (1, 3, 10):
        raise ValueError(f"num_crops must be 1, 3 or 10, got {num_crops}")
    augment.normalization_config(backbone, modality)          # validates the backbone
    return mod.num_channels(modality, sampler.frames_per_step())


def _transform(fetch, num_frames, *, encoded, sampler, modality, mode, input_size, num_crops,
               seed, kernels=False, check=None):
    """The per-clip half of the recipe shared by build_dataset and preprocess_video.

    fetch(indices (T, L)) -> list of streams: [rgb] or [flow_x, flow_y]; each (T, L) JPEG
    strings (encoded=True) or uint8 (T, L, H, W, c) (encoded=False).
    Returns the clip on the 8-bit scale, stacked on channels (C0 = 3L rgb/rgbdiff, 2L flow),
    before RGB differences and normalisation (`_finish`, run once per batch):
      train: (T, S, S, C0): crop (decoded from the crop window only), flip and bilinear resize:
        with `kernels` one fused uint8 op (tfvid.data.kernels), uint8 out; otherwise the uint8
        flip (before resizing: flip and bilinear resize commute) and TF's resize, float32 out;
      val/test: float32 (V, T, S, S, C0) evaluation views.
    check: None, or a bool scalar (the element's metadata is valid): then the sampled frames
    are checked before decoding and (clip, ok, bad_jpeg, bad_stream, bad_frame) is returned;
    an element that is not ok is not decoded (zeros clip); bad_stream/bad_frame name the first
    sampled JPEG that is not complete (stream index in `fetch`'s list, 0-based frame index).
    """
    is_flow = modality == "flow"
    s_crop = s_flip = None
    if mode == "train":
        if seed is None:
            raise ValueError("mode 'train' needs a seed")
        s_sample, s_crop, s_flip = tf.unstack(
            tf.random.experimental.stateless_split(as_seed(seed), 3))
    else:
        s_sample = None
    indices = sampler(num_frames, mode, s_sample)
    streams = fetch(indices)
    if check is None:
        return _clip_of(streams, encoded=encoded, modality=modality, mode=mode,
                        input_size=input_size, num_crops=num_crops, s_crop=s_crop,
                        s_flip=s_flip, kernels=kernels)
    # Bad data is named, not decoded: every sampled JPEG must start with SOI and end with EOI.
    bad = tf.stack([tf.logical_not(_jpeg_complete(s)) for s in streams])    # (P, T, L)
    ok = tf.logical_and(check, tf.logical_not(tf.reduce_any(bad)))
    first = tf.argmax(tf.cast(tf.reshape(bad, [-1]), tf.int32), output_type=tf.int32)
    per_stream = tf.size(indices)
    bad_stream, bad_frame = first // per_stream, tf.gather(tf.reshape(indices, [-1]),
                                                           first % per_stream)
    channels = (2 if is_flow else 3) * sampler.frames_per_step()
    dtype = tf.uint8 if (mode == "train" and kernels) else tf.float32
    shape = [tf.shape(indices)[0], input_size, input_size, channels]
    if mode != "train":
        shape = [num_crops] + shape
    clip = tf.cond(ok, lambda: _clip_of(streams, encoded=encoded, modality=modality, mode=mode,
                                        input_size=input_size, num_crops=num_crops,
                                        s_crop=s_crop, s_flip=s_flip, kernels=kernels),
                   lambda: tf.zeros(tf.stack(shape), dtype))
    return clip, ok, tf.reduce_any(bad), bad_stream, bad_frame


def _jpeg_complete(encoded):
    """Elementwise: the string starts with the JPEG SOI marker FFD8 and ends with EOI FFD9."""
    n = tf.strings.length(encoded)
    head = tf.strings.substr(encoded, tf.zeros_like(n), tf.fill(tf.shape(n), 2))
    tail = tf.strings.substr(encoded, tf.maximum(n - 2, 0), tf.fill(tf.shape(n), 2))
    return (n >= 4) & tf.equal(head, b"\xff\xd8") & tf.equal(tail, b"\xff\xd9")


def _clip_of(streams, *, encoded, modality, mode, input_size, num_crops, s_crop, s_flip,
             kernels):
    """Sampled streams -> the clip of `_transform` (decode, crop, stack, flip, resize)."""
    is_flow = modality == "flow"
    decode_channels = 1 if is_flow else 3
    window = None
    if mode == "train":
        if encoded:
            height, width = tf.unstack(tf.image.extract_jpeg_shape(streams[0][0, 0])[:2])
        else:
            height, width = tf.unstack(tf.shape(streams[0])[2:4])
        scales = augment.RGB_SCALES if modality == "rgb" else augment.FLOW_SCALES
        window = augment.sample_crop_window(height, width, s_crop, input_size, scales)
    if encoded:
        frames = [_decode(s, decode_channels, window) for s in streams]
    elif window is not None:
        y, x, h, w = tf.unstack(window)
        frames = [s[:, :, y:y + h, x:x + w, :] for s in streams]
    else:
        frames = streams
    if is_flow:
        stacked = mod.flow_stack(frames[0][..., 0], frames[1][..., 0])
    else:
        stacked = mod.rgb_stack(frames[0])
    if mode != "train":
        return augment.eval_views(stacked, num_crops, input_size, is_flow)
    if kernels:
        from tfvid.data import kernels as fused
        coin = augment.flip_coin(s_flip)
        clip = fused.flip_resize(stacked, [input_size, input_size], coin)
        if is_flow:
            clip = tf.cond(coin, lambda: augment.invert_flow_x(clip), lambda: clip)
        return clip
    clip = augment.random_flip(stacked, s_flip, is_flow)
    return augment.resize(clip, [input_size, input_size])


def _finish(clip, *, modality, backbone, kernels=False):
    """The per-batch half: (..., S, S, C0) clips from `_transform` -> float32 network input
    (..., S, S, C): RGB differences, normalise (with `kernels`, uint8 clips in one fused
    pass). One op of each kind per batch, not per clip."""
    if modality == "rgbdiff":
        clip = mod.rgb_diff_channels(clip)
    return augment.normalize(clip, backbone, modality, kernels=kernels)


def preprocess_video(frames, *, sampler, modality="rgb", mode="test", input_size=224,
                     backbone="resnet50", num_crops=1, flow_x=None, flow_y=None, seed=None):
    """The build_dataset transforms on one decoded video (prediction jobs, export signatures).

    frames: uint8 (n, H, W, 3) (may be None for modality 'flow'); flow_x, flow_y: uint8
    (n-1, H, W) grayscale flow on the 8-bit scale. Returns float32 (V, T, S, S, C) for
    val/test, (T, S, S, C) for train (which needs a stateless `seed`).
    """
    if modality == "flow":
        if flow_x is None or flow_y is None:
            raise ValueError("modality 'flow' needs flow_x and flow_y (n-1, H, W) uint8")
        flow_x, flow_y = tf.convert_to_tensor(flow_x), tf.convert_to_tensor(flow_y)
        num = tf.shape(flow_x)[0]
        checks = [tf.debugging.assert_equal(tf.shape(flow_y)[0], num,
                                            message="flow_x and flow_y lengths differ")]
        if frames is not None:
            checks.append(tf.debugging.assert_equal(
                num, tf.shape(frames)[0] - 1, message="flow needs n-1 frames for n RGB frames"))
        with tf.control_dependencies(checks):
            num = tf.identity(num)

        def fetch(idx):
            return [tf.gather(flow_x, idx)[..., None], tf.gather(flow_y, idx)[..., None]]
    else:
        frames = tf.convert_to_tensor(frames)
        num = tf.shape(frames)[0]

        def fetch(idx):
            return [tf.gather(frames, idx)]
    channels = _check_args(sampler, modality, mode, num_crops, backbone)
    clip = _transform(fetch, num, encoded=False, sampler=sampler, modality=modality, mode=mode,
                      input_size=input_size, num_crops=num_crops, seed=seed)
    clip = _finish(clip, modality=modality, backbone=backbone)
    steps = sampler.num_steps(mode)
    shape = [steps, input_size, input_size, channels]
    return tf.ensure_shape(clip, shape if mode == "train" else [num_crops] + shape)


# ------------------------------------------------------------------------------ file lists
def _resolve_files(files):
    """-> ('tfrecord' | 'list', sorted paths). ValueError naming an unmatched pattern."""
    if isinstance(files, (str, os.PathLike)):
        files = [files]
    files = [os.fspath(f) for f in files]
    if not files:
        raise ValueError("build_dataset: no files given")
    paths = []
    for pattern in files:
        matched = sorted(tf.io.gfile.glob(pattern))
        if not matched:
            raise ValueError(f"build_dataset: no files matched {pattern!r}")
        paths += matched
    is_list = [p.endswith(".list") for p in paths]
    if any(is_list) and not all(is_list):
        raise ValueError(f"build_dataset: mix of .list files and TFRecord shards in {files}")
    return ("list" if all(is_list) else "tfrecord"), paths


def _read_list(path):
    """-> (dirs, ids, num_frames, labels, line numbers) of a raw-frames list file."""
    root = os.path.dirname(os.path.abspath(path))
    stem = os.path.splitext(os.path.basename(path))[0]
    prefix = f"frames/{stem}/"          # prepare_data: <out>/<split>.list, frames/<split>/<id>
    dirs, ids, counts, labels, lines = [], [], [], [], []
    with tf.io.gfile.GFile(path) as f:
        for line_no, line in enumerate(f, 1):
            if not line.strip():
                continue
            parts = line.strip().rsplit(maxsplit=2)
            try:
                video, count, label = parts[0], int(parts[1]), int(parts[2])
            except (IndexError, ValueError):
                raise ValueError(f"{path}:{line_no}: expected '<video_dir> <num_frames> "
                                 f"<label>', got {line.strip()!r}") from None
            dirs.append(os.path.join(root, video))
            norm = video.replace(os.sep, "/")
            ids.append(norm[len(prefix):] if norm.startswith(prefix) and len(norm) > len(prefix)
                       else video)
            counts.append(count)
            labels.append(label)
            lines.append(line_no)
    if not ids:
        raise ValueError(f"list file {path!r} is empty")
    return dirs, ids, counts, labels, lines


def read_list_file(path):
    """Parses a raw-frames list file -> (dirs, ids, num_frames, labels) Python lists.

    Lines: `<video_dir> <num_frames> <label>` (the directory may contain spaces); dirs are
    joined to the list file's folder. The id is video_dir without a leading `frames/<split>/`
    when <split> is the list file's stem (prepare_data writes `<out>/<split>.list` with lines
    `frames/<split>/<id> n label`), so that a video has the same id in both layouts.
    """
    return _read_list(path)[:4]


# TFRecord framing: uint64 length, uint32 masked crc of the length, data, uint32 crc of data.
_HEADER, _FOOTER = 12, 4
_INDEX_CACHE: dict = {}


def record_index(path):
    """Byte offsets of the records of an uncompressed TFRecord shard, found by reading the
    12-byte record headers only -> (offsets list, None) or (offsets of the complete records,
    problem text) when the shard is truncated (the last record runs past the end of the file).
    Cached per (path, size, mtime)."""
    import struct
    stat = tf.io.gfile.stat(path)
    key = (path, stat.length, stat.mtime_nsec)
    if key in _INDEX_CACHE:
        return _INDEX_CACHE[key]
    size, offsets, problem, pos = stat.length, [], None, 0
    with tf.io.gfile.GFile(path, "rb") as f:
        while pos < size:
            if pos + _HEADER > size:
                problem = "truncated"
                break
            f.seek(pos)
            header = f.read(8)
            if len(header) < 8:
                problem = "truncated"
                break
            length = struct.unpack("<Q", header)[0]
            if pos + _HEADER + length + _FOOTER > size:
                problem = "truncated"
                break
            offsets.append(pos)
            pos += _HEADER + length + _FOOTER
    if problem:
        problem = (f"{path}: truncated TFRecord shard: record {len(offsets)} (at byte {pos}) "
                   f"runs past the end of the file ({size} bytes); {len(offsets)} complete "
                   f"records before it")
    _INDEX_CACHE[key] = (offsets, problem)
    return offsets, problem


def _read_record(path, offset):
    """The serialized record of an uncompressed TFRecord shard starting at byte `offset`."""
    variant = tf.raw_ops.TFRecordDatasetV2(
        filenames=tf.reshape(path, [1]), compression_type="",
        buffer_size=tf.constant(256 * 1024, tf.int64), byte_offsets=tf.reshape(offset, [1]))
    one = tf.data.experimental.from_variant(variant, tf.TensorSpec([], tf.string))
    return one.take(1).get_single_element()


def _frame_names(video_dir, prefix, indices):
    """(T, L) 0-based indices -> file names <dir>/<prefix>%05d.jpg (1-based)."""
    numbers = tf.strings.as_string(indices + 1, width=5, fill="0")
    return tf.strings.join([video_dir + "/" + prefix, numbers, ".jpg"])


def _read_files(names):
    """Reads files named by a string tensor -> their bytes, same shape (one op per file when
    the shape is static)."""
    if names.shape.is_fully_defined():
        flat = tf.stack([tf.io.read_file(n) for n in tf.unstack(tf.reshape(names, [-1]))])
    else:
        flat = tf.map_fn(tf.io.read_file, tf.reshape(names, [-1]),
                         fn_output_signature=tf.TensorSpec([], tf.string))
    return tf.reshape(flat, tf.shape(names))


def verify_records(files) -> dict:
    """Reads every record of every shard: {path: record count}.

    Raises tf.errors.DataLossError naming the first truncated or corrupt shard.
    """
    _, paths = _resolve_files(files)
    counts = {}
    for path in paths:
        try:
            counts[path] = int(tf.data.TFRecordDataset(path).reduce(0, lambda c, _: c + 1))
        except tf.errors.DataLossError as e:
            raise tf.errors.DataLossError(None, None, f"{path}: {e.message}") from None
    return counts


# ------------------------------------------------------------- variable-length (MDI) batches
def cyclic_pad(clip, length, num_steps=None):
    """Repeats the T steps of `clip` (..., T, S, S, C) cyclically to `length` steps.

    Step i of the result is step i mod T of the clip (T = `num_steps`, default the clip's own
    T; with a batch, `num_steps` (B,) gives each video's true T and the clip is
    (B, ..., T_max, S, S, C)). A video's own windows repeated keep temporal max pooling over
    windows exact, unlike zero padding. Returns (..., length, S, S, C).
    """
    clip = tf.convert_to_tensor(clip)
    axis = clip.shape.rank - 4
    if num_steps is None:
        steps = tf.maximum(tf.shape(clip)[axis], 1)
        out = tf.gather(clip, tf.range(length) % steps, axis=axis)
    else:
        steps = tf.maximum(tf.cast(num_steps, tf.int32), 1)
        idx = tf.range(length)[None, :] % steps[:, None]                 # (B, length)
        out = tf.gather(clip, idx, axis=axis, batch_dims=1)
    return out


def _batch_variable_length(ds, batch_size, drop_remainder, fixed_steps, num_parallel_calls):
    """Batches clips whose T varies by video (MDI windows), adding 'num_steps' (B,) = each
    video's true T. Every video is padded by repeating its own steps cyclically: to
    `fixed_steps` (training with the sampler's max window count: static shapes) or else to
    the longest video of the batch."""
    ds = ds.map(lambda e: {**e, "num_steps": tf.shape(e["clip"])[-4]})
    if fixed_steps:
        def pad(e):
            clip = cyclic_pad(e["clip"], fixed_steps)
            shape = tf.TensorShape([fixed_steps]).concatenate(e["clip"].shape[1:])
            return {**e, "clip": tf.ensure_shape(clip, shape)}
        ds = ds.map(pad, num_parallel_calls=num_parallel_calls, deterministic=True)
        return ds.batch(batch_size, drop_remainder=drop_remainder)

    def fill(e):
        clip = e["clip"]
        length = tf.shape(clip)[clip.shape.rank - 4]
        out = cyclic_pad(clip, length, e["num_steps"])
        return {**e, "clip": tf.ensure_shape(out, clip.shape)}
    ds = ds.padded_batch(batch_size, drop_remainder=drop_remainder)
    return ds.map(fill, num_parallel_calls=num_parallel_calls, deterministic=True)


# --------------------------------------------------------------------------- build_dataset
BAD_DATA = ("mark", "skip", "fail")


def _epochs(table, num, *, training, repeat, seed):
    """Dataset of the rows of `table` (dict of equal-length lists) in the read order: training
    -> every epoch a new stateless permutation of all rows (seeded by (seed, epoch)), so the
    order mixes the whole dataset and depends on the position only (exact resume); else in
    order. repeat -> forever."""
    consts = {k: tf.constant(v, tf.int64 if k == "offset" else None)
              for k, v in table.items()}

    def rows(order):
        return tf.data.Dataset.from_tensor_slices(order).map(
            lambda i: {k: tf.gather(c, i) for k, c in consts.items()})

    if not training:
        ds = rows(tf.range(num))
        return ds.repeat() if repeat else ds

    def epoch(e):
        s = tf.random.experimental.stateless_fold_in(seed, e)
        return rows(tf.random.experimental.stateless_shuffle(tf.range(num), seed=s))
    epochs = tf.data.Dataset.range(2 ** 62 if repeat else 1)
    return epochs.flat_map(epoch)


def build_dataset(files, *, sampler, mode, modality="rgb", batch_size=8, input_size=224,
                  backbone="resnet50", num_crops=1, seed=0, input_context=None, repeat=None,
                  shuffle_buffer=64, drop_remainder=None, num_parallel_calls=tf.data.AUTOTUNE,
                  cache=False, kernels=None, num_classes=None, bad_data="mark", feature=None):
    """Batches of {'clip', 'label', 'id', 'valid', 'problem'} from TFRecord shards or raw-frame
    list files, or (feature=<name>) of cached per-frame features from feature shards.

    files: path, glob pattern or a list of them (TFRecord shards, or `*.list` files).
    sampler: a tfvid.data.sampling sampler (indices (T, L) per video).
    mode: 'train' -> clip float32 (B, T, S, S, C) (multi-scale crop + flip);
          'val'/'test' -> (B, V, T, S, S, C), V = num_crops in {1 (centre), 3, 10}.
    label int32 (B,) (-1 when a record has none); id string (B,); valid bool (B,); problem
    string (B,): "" for a valid element, else "video <id> (<where>): <reason>" with <where> the
    shard and record number within it (TFRecords) or the list file line / frame file (raw
    frames). An element is invalid when a sampled JPEG is not complete (no FFD8 start or FFD9
    end; checked before decoding, the clip is then zeros), when `num_classes` is given and its
    label is outside [0, num_classes), or when its flow and RGB frame counts disagree.
    Samplers whose T depends on the video (MDI) add 'num_steps' int32 (B,) (each video's true
    T) and pad every video by repeating its own steps cyclically (see `cyclic_pad`): in train
    to the sampler's max_windows (static T), otherwise to the longest video of the batch.
    input_context: a tf.distribute.InputContext: videos are sharded by pipeline and batch_size
    is the global batch size.
    repeat: None -> forever in train, once otherwise. drop_remainder: None -> train only.
    Order: training reads every epoch a fresh permutation of all videos of its pipeline
    (seeded by `seed` and the epoch; TFRecords are read by record position from an index of
    the record headers, so only one serialized record per parallel read is held); val/test
    read files and records in order. Shuffle_buffer only applies to GZIP shards (no random
    access: all shards are interleaved record by record, then shuffled in this buffer).
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

    Per clip only reading, decoding of the crop window (uint8), channel stacking, the flip
    and the resize run (uint8 with the kernels); RGB differences and normalisation run once
    per batch.

    feature: None (frames), or the name of cached per-frame features (TFRecord shards of
    pipelines/extract_features.py, or any records with FEATURE/<name>/floats; DIN, VideoMap):
    each record's m feature rows are its "frames". The sampler gives row indices over the m
    rows (one row per step: a sampler with frames_per_step() > 1, or whose T depends on the
    video, is refused with ValueError) and the sampled rows are gathered as they are (no
    decoding, cropping or normalisation; modality, backbone, input_size, num_crops and
    kernels are ignored). clip float32 (B, T, D) in train, (B, 1, T, D) in val/test (one
    view). D (static) is the FEATURE/<name>/dimension of the first record holding the
    features (`feature_dimension`, read once when the dataset is built). A record lacking
    the features, or whose dimension (context, or the length of a row) differs from D, is
    invalid (valid False, problem "video <id> (<shard> record <k>): <reason>", zeros clip)
    and follows `bad_data` like other bad data. Order, per-epoch shuffling, seeds (the
    sampling seed of element i is the one the frame path uses) and exact resume are those of
    frame records.
    """
    if bad_data not in BAD_DATA:
        raise ValueError(f"bad_data must be one of {BAD_DATA}, got {bad_data!r}")
    if feature is not None:
        channels = None
        _check_feature_args(sampler, mode, feature)
    else:
        channels = _check_args(sampler, modality, mode, num_crops, backbone)
    training = mode == "train"
    repeat = training if repeat is None else repeat
    drop_remainder = training if drop_remainder is None else drop_remainder
    layout, paths = _resolve_files(files)
    if feature is not None and layout != "tfrecord":
        raise ValueError(f"build_dataset: features {feature!r} are read from TFRecord shards, "
                         f"got list files {paths}")
    num_pipes, pipe_id = 1, 0
    if input_context is not None:
        num_pipes, pipe_id = input_context.num_input_pipelines, input_context.input_pipeline_id
        batch_size = input_context.get_per_replica_batch_size(batch_size)
    base_seed = tf.random.experimental.stateless_fold_in(as_seed(int(seed)), pipe_id)
    order_seed = tf.random.experimental.stateless_fold_in(
        tf.constant([int(seed), 1], tf.int64), pipe_id)
    is_flow = modality == "flow" and feature is None
    if feature is not None:
        kernels = False
    if kernels is None:
        from tfvid.data import kernels as fused
        kernels = training and fused.available()
    kernels = bool(kernels) and training
    if num_classes is not None:
        num_classes = int(num_classes)

    def transform(fetch, num, index, check):
        clip_seed = (tf.random.experimental.stateless_fold_in(base_seed, index) if training
                     else None)
        return _transform(fetch, num, encoded=True, sampler=sampler, modality=modality,
                          mode=mode, input_size=input_size, num_crops=num_crops,
                          seed=clip_seed, kernels=kernels, check=check)

    def label_check(label):
        if num_classes is None:
            return tf.constant(True), tf.constant("")
        ok = tf.logical_and(label >= 0, label < num_classes)
        if not training:   # -1 = unlabeled (test lists): scored, left out of the metrics
            ok = tf.logical_or(ok, tf.equal(label, schema.NO_LABEL))
        return ok, tf.strings.join(["label ", tf.strings.as_string(label),
                                    f" is outside [0, {num_classes})" +
                                    ("" if training else " (and not -1 = unlabeled)")])

    def output(clip, ok, reason, video_id, where, label):
        problem = tf.where(ok, "", tf.strings.join(["video ", video_id, " (", where, "): ",
                                                    reason]))
        if bad_data == "fail":
            check = tf.debugging.Assert(ok, [problem], summarize=1)
            with tf.control_dependencies([check]):
                clip = tf.identity(clip)
        return {"clip": clip, "label": label, "id": video_id, "valid": ok, "problem": problem}

    def pick(*cases):
        """The reason of the first failing (ok, reason) pair."""
        out = tf.constant("")
        for ok, reason in reversed(cases):
            out = tf.where(ok, out, reason)
        return out

    stream_names = ("flow_x frame ", "flow_y frame ") if is_flow else ("frame ",)

    if layout == "tfrecord":
        gz = [p.endswith(".gz") for p in paths]
        if all(gz):
            ds = _gzip_records(paths, training, repeat, seed, num_pipes, pipe_id,
                               shuffle_buffer, num_parallel_calls)
        elif any(gz):
            raise ValueError(f"build_dataset: mix of GZIP (.gz) and uncompressed shards in "
                             f"{files}")
        else:
            table = {"path": [], "record": [], "offset": []}
            for path in paths:
                offsets, problem = record_index(path)
                if problem:
                    if bad_data != "skip":
                        raise tf.errors.DataLossError(None, None, problem)
                    log.warning("%s: skipping the rest of this shard", problem)
                table["path"] += [path] * len(offsets)
                table["record"] += list(range(len(offsets)))
                table["offset"] += offsets
            table = {k: v[pipe_id::num_pipes] for k, v in table.items()}
            if not table["path"]:
                raise ValueError(f"build_dataset: no records in {paths if len(paths) < 5 else files}"
                                 + (f" for input pipeline {pipe_id} of {num_pipes}"
                                    if num_pipes > 1 else ""))
            table["offset"] = [int(o) for o in table["offset"]]
            ds = _epochs(table, len(table["path"]), training=training,
                         repeat=repeat and training, seed=order_seed)
            ds = ds.map(lambda r: {"path": r["path"], "record": r["record"],
                                   "serialized": _read_record(r["path"], r["offset"])},
                        num_parallel_calls=num_parallel_calls, deterministic=True)
            if cache and not training:
                ds = ds.cache() if cache is True else ds.cache(str(cache))
            if repeat and not training:
                ds = ds.repeat()

        if feature is not None:
            dim = feature_dimension(paths, feature)

        def load_features(index, rec):
            clip, ok, reason, video_id, label = _load_feature_record(
                rec["serialized"], feature, dim, sampler=sampler, mode=mode,
                seed=(tf.random.experimental.stateless_fold_in(base_seed, index) if training
                      else None), label_check=label_check)
            where = tf.strings.join([rec["path"], " record ",
                                     tf.strings.as_string(rec["record"])])
            return output(clip, ok, reason, video_id, where, label)

        def load(index, rec):
            ex = schema.parse_example(rec["serialized"], with_flow=is_flow)
            where = tf.strings.join([rec["path"], " record ",
                                     tf.strings.as_string(rec["record"])])
            label = ex["label"]
            label_ok, label_reason = label_check(label)
            if is_flow:
                n_flow, n_y = ex["num_flow"], tf.size(ex["flow_y"])
                count_ok = tf.logical_and(tf.equal(n_flow, ex["num_frames"] - 1), n_flow > 0)
                count_ok = tf.logical_and(count_ok, tf.equal(n_y, n_flow))
                count_reason = tf.strings.join([
                    "RGB/flow frame-count mismatch: RGB frames ",
                    tf.strings.as_string(ex["num_frames"]), ", flow_x ",
                    tf.strings.as_string(n_flow), ", flow_y ", tf.strings.as_string(n_y),
                    " (flow needs RGB frames - 1)"])
                num = tf.maximum(tf.minimum(n_flow, n_y), 1)
                streams = (ex["flow_x"], ex["flow_y"])
            else:
                count_ok, count_reason = tf.constant(True), tf.constant("")
                num, streams = ex["num_frames"], (ex["frames"],)

            def fetch(idx):      # a missing frame reads as "" (not a JPEG): marked, no crash
                return [tf.gather(tf.concat([s, [""]], 0),
                                  tf.clip_by_value(idx, 0, tf.size(s))) for s in streams]
            clip, ok, bad_jpeg, stream, frame = transform(
                fetch, num, index, tf.logical_and(label_ok, count_ok))
            jpeg_reason = tf.strings.join([
                tf.gather(tf.constant(stream_names), stream), tf.strings.as_string(frame),
                " is not a complete JPEG"])
            reason = pick((count_ok, count_reason), (label_ok, label_reason),
                          (tf.logical_not(bad_jpeg), jpeg_reason))
            return output(clip, ok, reason, ex["id"], where, label)
    else:
        table = {"dir": [], "id": [], "num_frames": [], "label": [], "where": []}
        for path in paths:
            dirs, ids, counts, labels, lines = _read_list(path)
            table["dir"] += dirs
            table["id"] += ids
            table["num_frames"] += counts
            table["label"] += labels
            table["where"] += [f"{path} line {n}" for n in lines]
        table = {k: v[pipe_id::num_pipes] for k, v in table.items()}
        ds = _epochs(table, len(table["id"]), training=training, repeat=repeat and training,
                     seed=order_seed)
        if cache and not training:
            ds = ds.cache() if cache is True else ds.cache(str(cache))
        if repeat and not training:
            ds = ds.repeat()
        prefixes = FLOW_TEMPLATES if is_flow else (RGB_TEMPLATE,)

        def load(index, meta):
            num = meta["num_frames"] - 1 if is_flow else meta["num_frames"]
            label = meta["label"]
            label_ok, label_reason = label_check(tf.cast(label, tf.int32))
            clip, ok, bad_jpeg, stream, frame = transform(
                lambda idx: [_read_files(_frame_names(meta["dir"], p, idx)) for p in prefixes],
                num, index, label_ok)
            bad_file = _frame_names(meta["dir"], tf.gather(tf.constant(prefixes), stream), frame)
            jpeg_reason = tf.strings.join(["frame file ", bad_file, " is not a complete JPEG"])
            reason = pick((label_ok, label_reason), (tf.logical_not(bad_jpeg), jpeg_reason))
            return output(clip, ok, reason, meta["id"], meta["where"], tf.cast(label, tf.int32))

    if feature is not None:
        ds = ds.enumerate().map(load_features, num_parallel_calls=num_parallel_calls,
                                deterministic=True)
        ds = ds.batch(batch_size, drop_remainder=drop_remainder,
                      num_parallel_calls=num_parallel_calls, deterministic=True)
        shape = [sampler.num_steps(mode), dim]
        shape = tf.TensorShape([None] + (shape if training else [1] + shape))
        ds = ds.map(lambda b: {**b, "clip": tf.ensure_shape(b["clip"], shape)},
                    num_parallel_calls=num_parallel_calls, deterministic=True)
        return ds.prefetch(tf.data.AUTOTUNE)
    ds = ds.enumerate().map(load, num_parallel_calls=num_parallel_calls, deterministic=True)
    if sampler.variable_length:
        ds = _batch_variable_length(ds, batch_size, drop_remainder,
                                    getattr(sampler, "max_windows", None) if training else None,
                                    num_parallel_calls)
    else:
        ds = ds.batch(batch_size, drop_remainder=drop_remainder,
                      num_parallel_calls=num_parallel_calls, deterministic=True)
    steps = sampler.num_steps(mode)
    shape = [steps, input_size, input_size, channels]
    shape = tf.TensorShape([None] + (shape if training else [num_crops] + shape))

    def finish(batch):
        clip = _finish(batch["clip"], modality=modality, backbone=backbone, kernels=kernels)
        return {**batch, "clip": tf.ensure_shape(clip, shape)}
    ds = ds.map(finish, num_parallel_calls=num_parallel_calls, deterministic=True)
    return ds.prefetch(tf.data.AUTOTUNE)


# ------------------------------------------------------------------- cached feature records
def _check_feature_args(sampler, mode, feature):
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
    _, paths = _resolve_files(files)
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


def _load_feature_record(serialized, name, dim, *, sampler, mode, seed, label_check):
    """One feature record -> (clip float32 (T, D) (train) or (1, T, D), ok, reason, id, label):
    the sampled rows of FEATURE/<name>/floats, zeros when the record is not ok (no rows,
    another dimension in its context or in a row, or a bad label)."""
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
        s_sample = tf.unstack(tf.random.experimental.stateless_split(as_seed(seed), 3))[0]
    idx = tf.reshape(sampler(tf.maximum(m, 1), mode, s_sample), [-1])      # (T,)
    clip = tf.cond(ok, lambda: tf.gather(tf.reshape(tf.sparse.to_dense(rows), [m, dim]), idx),
                   lambda: tf.zeros([tf.size(idx), dim], tf.float32))
    clip = tf.ensure_shape(clip, [sampler.num_steps(mode), dim])
    if mode != "train":
        clip = clip[None]
    return clip, ok, reason, ctx[schema.ID], label


def _gzip_records(paths, training, repeat, seed, num_pipes, pipe_id, shuffle_buffer,
                  num_parallel_calls):
    """GZIP shards (no random access): {'path', 'record', 'serialized'} read sequentially;
    training interleaves all shards record by record and shuffles in `shuffle_buffer`."""
    ds = tf.data.Dataset.from_tensor_slices(paths)

    def open_shard(path):
        records = tf.data.TFRecordDataset(path, compression_type="GZIP").enumerate()
        return records.map(lambda i, s: {"path": path, "record": i, "serialized": s})

    if training:
        ds = ds.shuffle(len(paths), seed=seed, reshuffle_each_iteration=True)
        ds = ds.interleave(open_shard, cycle_length=len(paths), block_length=1,
                           num_parallel_calls=num_parallel_calls, deterministic=True)
    else:
        ds = ds.interleave(open_shard, cycle_length=1)
    if num_pipes > 1:
        ds = ds.shard(num_pipes, pipe_id)
    if training and shuffle_buffer and shuffle_buffer > 1:
        ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    return ds.repeat() if repeat else ds
