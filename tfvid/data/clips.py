"""One video's sampled frames -> its clip: the transforms shared by build_dataset and
preprocess_video (docs/architecture.md, docs/tsn.md, docs/stnet.md).

    transform(fetch, n, ...)   per clip: sample indices -> fetch the sampled frames (encoded
                               strings or decoded arrays) -> decode only those (train:
                               decode_and_crop_jpeg of the crop window) -> stack the L frames of
                               a step on channels (uint8) -> train: flip + resize of the crop
                               (one fused uint8 kernel, tfvid.data.kernels, with `kernels`;
                               else the uint8 flip, then TF's float resize); val/test: the
                               evaluation views
    finish(clip, ...)          per batch: RGB differences -> normalise (one op of each kind
                               per batch; the fused kernel on uint8 batches)
    preprocess_video(frames, sampler=...)   both halves on one decoded video

Training crops (`augmentation`, tfvid.data.augment.AUGMENTATIONS): 'multiscale_crop_flip' (TSN's
corner crops with scale jitter, resized to S) or 'random_crop_flip' (a plain S x S window of
the stored frame, StNet's reader: no resize unless the frame is smaller), then a flip with
probability 1/2 (flow: x -> 255 - x). One crop and one flip per clip.
"""
from __future__ import annotations

import tensorflow as tf

from tfvid.data import augment, modality as mod
from tfvid.data.sampling import as_seed


def decode(encoded, channels, window=None):
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


def check_args(sampler, modality, mode, num_crops, backbone,
               augmentation="multiscale_crop_flip", input_size=None, scale_size=None) -> int:
    """Validates the clip arguments; returns the channels of one time step."""
    mod.check_modality(modality)
    if mode not in ("train", "val", "test"):
        raise ValueError(f"mode must be 'train', 'val' or 'test', got {mode!r}")
    if mode != "train" and num_crops not in (1, 3, 10):
        raise ValueError(f"num_crops must be 1, 3 or 10, got {num_crops}")
    augment.check_augmentation(augmentation)
    if scale_size is not None and input_size is not None and int(scale_size) < input_size:
        raise ValueError(f"scale_size {scale_size} is smaller than input_size {input_size} "
                         f"(the evaluation views are input_size crops of the scaled frames)")
    augment.normalization_config(backbone, modality)          # validates the backbone
    return mod.num_channels(modality, sampler.frames_per_step())


def jpeg_complete(encoded):
    """Elementwise: the string starts with the JPEG SOI marker FFD8 and ends with EOI FFD9."""
    n = tf.strings.length(encoded)
    head = tf.strings.substr(encoded, tf.zeros_like(n), tf.fill(tf.shape(n), 2))
    tail = tf.strings.substr(encoded, tf.maximum(n - 2, 0), tf.fill(tf.shape(n), 2))
    return (n >= 4) & tf.equal(head, b"\xff\xd8") & tf.equal(tail, b"\xff\xd9")


def transform(fetch, num_frames, *, encoded, sampler, modality, mode, input_size, num_crops,
              seed, kernels=False, check=None, augmentation="multiscale_crop_flip",
              scale_size=None):
    """The per-clip half of the recipe shared by build_dataset and preprocess_video.

    fetch(indices (T, L)) -> list of streams: [rgb] or [flow_x, flow_y]; each (T, L) JPEG
    strings (encoded=True) or uint8 (T, L, H, W, c) (encoded=False).
    seed: train only, the clip's stateless seed (split into sampling, crop and flip seeds).
    Returns the clip on the 8-bit scale, stacked on channels (C0 = 3L rgb/rgbdiff, 2L flow),
    before RGB differences and normalisation (`finish`, run once per batch):
      train: (T, S, S, C0): crop (decoded from the crop window only), flip and resize (see
        `augmentation`): with `kernels` one fused uint8 op, uint8 out; otherwise the uint8
        flip (before resizing: flip and bilinear resize commute) and TF's resize, float32 out;
      val/test: float32 (V, T, S, S, C0) evaluation views (frames first scaled to the short
        side `scale_size`, default input_size * 256 // 224: tfvid.data.augment.eval_views).
    check: None, or a bool scalar (the element's metadata is valid): then the sampled frames
    are checked before decoding and (clip, ok, bad_jpeg, bad_stream, bad_frame) is returned;
    an element that is not ok is not decoded (zeros clip); bad_stream/bad_frame name the first
    sampled JPEG that is not complete (stream index in `fetch`'s list, 0-based frame index).
    """
    s_crop = s_flip = s_sample = None
    if mode == "train":
        if seed is None:
            raise ValueError("mode 'train' needs a seed")
        s_sample, s_crop, s_flip = tf.unstack(
            tf.random.experimental.stateless_split(as_seed(seed), 3))
    indices = sampler(num_frames, mode, s_sample)
    streams = fetch(indices)

    def clip_of():
        return _clip_of(streams, encoded=encoded, modality=modality, mode=mode,
                        input_size=input_size, num_crops=num_crops, s_crop=s_crop,
                        s_flip=s_flip, kernels=kernels, augmentation=augmentation,
                        scale_size=scale_size)
    if check is None:
        return clip_of()
    # Bad data is named, not decoded: every sampled JPEG must start with SOI and end with EOI.
    bad = tf.stack([tf.logical_not(jpeg_complete(s)) for s in streams])    # (P, T, L)
    ok = tf.logical_and(check, tf.logical_not(tf.reduce_any(bad)))
    first = tf.argmax(tf.cast(tf.reshape(bad, [-1]), tf.int32), output_type=tf.int32)
    per_stream = tf.size(indices)
    bad_stream, bad_frame = first // per_stream, tf.gather(tf.reshape(indices, [-1]),
                                                           first % per_stream)
    channels = (2 if modality == "flow" else 3) * sampler.frames_per_step()
    dtype = tf.uint8 if (mode == "train" and kernels) else tf.float32
    shape = [tf.shape(indices)[0], input_size, input_size, channels]
    if mode != "train":
        shape = [num_crops] + shape
    clip = tf.cond(ok, clip_of, lambda: tf.zeros(tf.stack(shape), dtype))
    return clip, ok, tf.reduce_any(bad), bad_stream, bad_frame


def _clip_of(streams, *, encoded, modality, mode, input_size, num_crops, s_crop, s_flip,
             kernels, augmentation, scale_size=None):
    """Sampled streams -> the clip of `transform` (decode, crop, stack, flip, resize)."""
    is_flow = modality == "flow"
    window = None
    if mode == "train":
        if encoded:
            height, width = tf.unstack(tf.image.extract_jpeg_shape(streams[0][0, 0])[:2])
        else:
            height, width = tf.unstack(tf.shape(streams[0])[2:4])
        window = augment.train_crop_window(augmentation, height, width, s_crop, input_size,
                                           modality)
    if encoded:
        frames = [decode(s, 1 if is_flow else 3, window) for s in streams]
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
        return augment.eval_views(stacked, num_crops, input_size, is_flow, scale_size)
    if kernels:
        from tfvid.data import kernels as fused
        coin = augment.flip_coin(s_flip)
        clip = fused.flip_resize(stacked, [input_size, input_size], coin)
        if is_flow:
            clip = tf.cond(coin, lambda: augment.invert_flow_x(clip), lambda: clip)
        return clip
    clip = augment.random_flip(stacked, s_flip, is_flow)
    return augment.resize(clip, [input_size, input_size])


def finish(clip, *, modality, backbone, kernels=False):
    """The per-batch half: (..., S, S, C0) clips from `transform` -> float32 network input
    (..., S, S, C): RGB differences, normalise (with `kernels`, uint8 clips in one fused
    pass). One op of each kind per batch, not per clip."""
    if modality == "rgbdiff":
        clip = mod.rgb_diff_channels(clip)
    return augment.normalize(clip, backbone, modality, kernels=kernels)


def preprocess_video(frames, *, sampler, modality="rgb", mode="test", input_size=224,
                     backbone="resnet50", num_crops=1, flow_x=None, flow_y=None, seed=None,
                     augmentation="multiscale_crop_flip", scale_size=None):
    """The build_dataset transforms on one decoded video (prediction jobs, export signatures).

    frames: uint8 (n, H, W, 3) (may be None for modality 'flow'); flow_x, flow_y: uint8
    (n-1, H, W) grayscale flow on the 8-bit scale. Returns float32 (V, T, S, S, C) for
    val/test, (T, S, S, C) for train (which needs a stateless `seed` and uses `augmentation`).
    scale_size (val/test): short side of the frames before the crops (default
    input_size * 256 // 224; StNet's 256 test view of 340 x 256 frames: 256).
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
    channels = check_args(sampler, modality, mode, num_crops, backbone, augmentation,
                          input_size, scale_size)
    clip = transform(fetch, num, encoded=False, sampler=sampler, modality=modality, mode=mode,
                     input_size=input_size, num_crops=num_crops, seed=seed,
                     augmentation=augmentation, scale_size=scale_size)
    clip = finish(clip, modality=modality, backbone=backbone)
    steps = sampler.num_steps(mode)
    shape = [steps, input_size, input_size, channels]
    return tf.ensure_shape(clip, shape if mode == "train" else [num_crops] + shape)
