"""The tf.data builder: files -> batches of normalised clips (DESIGN.md "Data flow").

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

Randomness: every training example gets the stateless seed fold_in([seed, 0], pipeline id,
element index), split into sampling, crop and flip seeds; files and records are shuffled with
`seed`, and all parallel steps keep their order, so one seed reproduces a run exactly.

Errors: no file matches a pattern, or an empty/malformed list file -> ValueError naming it; a
truncated or corrupt TFRecord shard -> tf.errors.DataLossError when iteration reaches it (TF's
message gives the byte offset, not the file: `verify_records(paths)` names it); a
record whose flow count is not n-1 -> tf.errors.InvalidArgumentError naming the video id; a
sampled frame that is not a valid JPEG -> tf.errors.InvalidArgumentError; a missing raw frame
file -> tf.errors.NotFoundError naming the file.
"""
from __future__ import annotations

import os

import tensorflow as tf

from tfvid.data import augment, modality as mod, schema
from tfvid.data.sampling import as_seed

RGB_TEMPLATE = "img_"          # raw layout: img_00001.jpg
FLOW_TEMPLATES = ("flow_x_", "flow_y_")


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
               seed, kernels=False):
    """The per-clip half of the recipe shared by build_dataset and preprocess_video.

    fetch(indices (T, L)) -> list of streams: [rgb] or [flow_x, flow_y]; each (T, L) JPEG
    strings (encoded=True) or uint8 (T, L, H, W, c) (encoded=False).
    Returns the clip on the 8-bit scale, stacked on channels (C0 = 3L rgb/rgbdiff, 2L flow),
    before RGB differences and normalisation (`_finish`, run once per batch):
      train: (T, S, S, C0): crop (decoded from the crop window only), flip and bilinear resize:
        with `kernels` one fused uint8 op (tfvid.data.kernels), uint8 out; otherwise the uint8
        flip (before resizing: flip and bilinear resize commute) and TF's resize, float32 out;
      val/test: float32 (V, T, S, S, C0) evaluation views.
    """
    is_flow = modality == "flow"
    decode_channels = 1 if is_flow else 3
    if mode == "train":
        if seed is None:
            raise ValueError("mode 'train' needs a seed")
        s_sample, s_crop, s_flip = tf.unstack(
            tf.random.experimental.stateless_split(as_seed(seed), 3))
    else:
        s_sample = None
    indices = sampler(num_frames, mode, s_sample)
    streams = fetch(indices)
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


def read_list_file(path):
    """Parses a raw-frames list file -> (dirs, ids, num_frames, labels) Python lists.

    Lines: `<video_dir> <num_frames> <label>` (the directory may contain spaces); dirs are
    joined to the list file's folder.
    """
    root = os.path.dirname(os.path.abspath(path))
    dirs, ids, counts, labels = [], [], [], []
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
            ids.append(video)
            counts.append(count)
            labels.append(label)
    if not ids:
        raise ValueError(f"list file {path!r} is empty")
    return dirs, ids, counts, labels


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
def build_dataset(files, *, sampler, mode, modality="rgb", batch_size=8, input_size=224,
                  backbone="resnet50", num_crops=1, seed=0, input_context=None, repeat=None,
                  shuffle_buffer=64, drop_remainder=None, num_parallel_calls=tf.data.AUTOTUNE,
                  cache=False, kernels=None):
    """Batches of {'clip', 'label', 'id'} from TFRecord shards or raw-frame list files.

    files: path, glob pattern or a list of them (TFRecord shards, or `*.list` files).
    sampler: a tfvid.data.sampling sampler (indices (T, L) per video).
    mode: 'train' -> clip float32 (B, T, S, S, C) (multi-scale crop + flip);
          'val'/'test' -> (B, V, T, S, S, C), V = num_crops in {1 (centre), 3, 10}.
    label int32 (B,) (-1 when a record has none); id string (B,). Samplers whose T depends on
    the video (MDI) add 'num_steps' int32 (B,) (each video's true T) and pad every video by
    repeating its own steps cyclically (see `cyclic_pad`): in train to the sampler's
    max_windows (static T), otherwise to the longest video of the batch.
    input_context: a tf.distribute.InputContext: files (or records, when there are fewer files
    than pipelines) are sharded by pipeline and batch_size is the global batch size.
    repeat: None -> forever in train, once otherwise. drop_remainder: None -> train only.
    cache: False, True (memory) or a file prefix; caches the serialized records / file list.
    kernels: use the fused uint8 flip+resize and normalisation kernels in training
    (tfvid.data.kernels; same result within 1 in 255 of the 8-bit scale). None: when they
    build on this machine; False: stock TensorFlow ops only.

    Per clip only reading, decoding of the crop window (uint8), channel stacking, the flip
    and the resize run (uint8 with the kernels); RGB differences and normalisation run once
    per batch.
    """
    channels = _check_args(sampler, modality, mode, num_crops, backbone)
    training = mode == "train"
    repeat = training if repeat is None else repeat
    drop_remainder = training if drop_remainder is None else drop_remainder
    layout, paths = _resolve_files(files)
    num_pipes, pipe_id = 1, 0
    if input_context is not None:
        num_pipes, pipe_id = input_context.num_input_pipelines, input_context.input_pipeline_id
        batch_size = input_context.get_per_replica_batch_size(batch_size)
    base_seed = tf.random.experimental.stateless_fold_in(as_seed(int(seed)), pipe_id)
    is_flow = modality == "flow"
    if kernels is None:
        from tfvid.data import kernels as fused
        kernels = training and fused.available()
    kernels = bool(kernels) and training

    def transform(fetch, num, index):
        clip_seed = (tf.random.experimental.stateless_fold_in(base_seed, index) if training
                     else None)
        return _transform(fetch, num, encoded=True, sampler=sampler, modality=modality,
                          mode=mode, input_size=input_size, num_crops=num_crops,
                          seed=clip_seed, kernels=kernels)

    if layout == "tfrecord":
        ds = tf.data.Dataset.from_tensor_slices(paths)
        shard_records = num_pipes > 1 and len(paths) < num_pipes
        if num_pipes > 1 and not shard_records:
            ds = ds.shard(num_pipes, pipe_id)
        if training:
            ds = ds.shuffle(len(paths), seed=seed, reshuffle_each_iteration=True)

        def open_shard(path):
            gz = tf.strings.regex_full_match(path, r".*\.gz")
            return tf.data.TFRecordDataset(path, compression_type=tf.where(gz, "GZIP", ""))

        if training:
            ds = ds.interleave(open_shard, cycle_length=min(len(paths), 4),
                               num_parallel_calls=num_parallel_calls, deterministic=True)
        else:                                     # files in order, records in order
            ds = ds.interleave(open_shard, cycle_length=1)
        if shard_records:
            ds = ds.shard(num_pipes, pipe_id)

        def load(index, serialized):
            ex = schema.parse_example(serialized, with_flow=is_flow)
            if is_flow:
                n_flow = ex["num_flow"]
                ok = tf.logical_and(tf.equal(n_flow, ex["num_frames"] - 1), n_flow > 0)
                ok = tf.logical_and(ok, tf.equal(tf.size(ex["flow_y"]), n_flow))
                check = tf.debugging.Assert(ok, [
                    "RGB/flow frame-count mismatch in video", ex["id"], "RGB frames:",
                    ex["num_frames"], "flow_x:", n_flow, "flow_y:", tf.size(ex["flow_y"])])
                with tf.control_dependencies([check]):
                    num = tf.identity(n_flow)
                streams = (ex["flow_x"], ex["flow_y"])
            else:
                num, streams = ex["num_frames"], (ex["frames"],)
            clip = transform(lambda idx: [tf.gather(s, idx) for s in streams], num, index)
            return {"clip": clip, "label": ex["label"], "id": ex["id"]}
    else:
        dirs, ids, counts, labels = [], [], [], []
        for path in paths:
            for acc, vals in zip((dirs, ids, counts, labels), read_list_file(path)):
                acc += vals
        ds = tf.data.Dataset.from_tensor_slices({
            "dir": dirs, "id": ids, "num_frames": tf.constant(counts, tf.int32),
            "label": tf.constant(labels, tf.int32)})
        if num_pipes > 1:
            ds = ds.shard(num_pipes, pipe_id)
        prefixes = FLOW_TEMPLATES if is_flow else (RGB_TEMPLATE,)

        def load(index, meta):
            num = meta["num_frames"] - 1 if is_flow else meta["num_frames"]
            clip = transform(
                lambda idx: [_read_files(_frame_names(meta["dir"], p, idx)) for p in prefixes],
                num, index)
            return {"clip": clip, "label": meta["label"], "id": meta["id"]}

    if cache:
        ds = ds.cache() if cache is True else ds.cache(str(cache))
    if training and shuffle_buffer and shuffle_buffer > 1:
        buffer = shuffle_buffer if layout == "tfrecord" else max(shuffle_buffer, len(ids))
        ds = ds.shuffle(buffer, seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
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
