"""Serving signatures that run the whole test protocol in the graph.

One SavedModel, several endpoints (tfvid.export.savedmodel writes them with
``keras.export.ExportArchive.add_endpoint``):

==================  ==========================================================================
signature           inputs
==================  ==========================================================================
serving_default     ``rgb`` uint8 (B, T, H, W, 3) decoded RGB frames, any H, W, any T >= 1;
                    flow runs: ``flow`` uint8 (B, T, H, W, 2), the 8-bit x/y flow of
                    prepare_data (x in channel 0, y in channel 1); four-stream: both.
encoded_frames      ``rgb`` string (B, T): one JPEG or PNG per frame; flow: ``flow`` string
                    (B, T, 2): the x and y grayscale JPEG/PNG of each flow field.
sequence_example    ``examples`` string (B,): serialized tf.train.SequenceExample records in
                    tfvid's schema (tfvid.data.schema; what prepare_data writes).
clip                ``clip`` float32 (B, T, S, S, C): clips the client sampled, cropped and
                    normalised itself (one view per row; see tfvid.export.savedmodel).
==================  ==========================================================================

Every signature returns ``logits`` float32 (B, K), ``probabilities`` = softmax(logits),
``top_k_indices`` int32 (B, k) and ``top_k_classes`` string (B, k) (k = min(5, K), best first;
class names from the sidecar, ``class_<i>`` without them).

Frame rule (serving_default, encoded_frames): the T frames of a row ARE the video. The graph
applies the model's test sampling (the sidecar's ``serving.inputs.<name>.sampling``, the
sampler of ``pipelines.evaluate``'s default protocol, e.g. TSN: 25 snippets of L frames spread
over the T frames with the TSN test rule) to those T frames, so a client sends the whole
decoded video (at the sidecar's ``decoding.fps`` when set), or any T frames it likes (e.g. 25
evenly spaced frames for a 25-snippet RGB TSN: the sampler then takes every one of them); all
rows of one request share T (send videos of different lengths as separate requests, or use
``sequence_example``). Flow: T flow fields (n - 1 for n frames), computed on frames of the
sidecar's ``decoding.frame_size`` (flow values are not rescaled when the graph resizes).

Per row, in the graph: sample the test positions, gather only those frames (encoded: decode
only those), resize them to the stored training frame size (the sidecar's
``decoding.frame_size`` (w, h), or ``short_side``; area interpolation as read_video, skipped
when the frames have that size already), then tfvid.data.pipeline.preprocess_video (test mode:
the ``serving.num_crops`` evaluation views, modality stacking, RGB differences,
normalisation), run the model on the views and average their logits (the TSN protocol of
tfvid.eval.protocol). ``sequence_example`` parses the record (tfvid.data.schema.parse_example)
and does the same on its encoded frames, so a prepare_data record gives the scores that
``pipelines.evaluate`` gives it with the same sampler and number of crops.
"""
from __future__ import annotations

from typing import Sequence

import tensorflow as tf

from tfvid.export.serving_protocol import (  # noqa: F401  (names of this module before)
    CLIP_SIGNATURE, DEFAULT_NUM_CROPS, ENCODED_SIGNATURE, FRAME_RULE, FRAMES_SIGNATURE,
    OUTPUTS, RAW_INPUTS, RECORD_SIGNATURE, RECORDS_INPUT, TOP_K, InputProtocol, Protocol,
    class_names_or_default, protocol_input, signature_description, top_k)
from tfvid.export.warmup import (  # noqa: F401
    WARMUP_FRAMES, WARMUP_PROTOCOL_BATCHES, warmup_inputs, warmup_size)


# ----------------------------------------------------------------------------- in the graph
class _Gathered:
    """A sampler over frames that were already gathered at `base`'s test positions: returns
    their (T, L) layout (so preprocess_video sees exactly the sampled frames)."""

    def __init__(self, base):
        self.base = base

    def num_steps(self, mode):
        return self.base.num_steps("test")

    def frames_per_step(self):
        return self.base.frames_per_step()

    def __call__(self, num_frames, mode, seed=None):
        return tf.reshape(tf.range(num_frames, dtype=tf.int32), [-1, self.frames_per_step()])


def _even(x):
    """Nearest even integer >= 2 (tfvid.prep.video.output_size's rounding)."""
    return tf.maximum(2, tf.cast(tf.floor(x / 2.0 + 0.5), tf.int32) * 2)


def stored_size(height, width, proto: InputProtocol):
    """(h, w) int32 the frames are resized to: the stored training frame size."""
    if proto.short_side is not None:
        s = float(proto.short_side)
        h, w = tf.cast(height, tf.float32), tf.cast(width, tf.float32)
        return tf.cond(width <= height,
                       lambda: tf.stack([_even(h * s / w), _even(tf.constant(s))]),
                       lambda: tf.stack([_even(tf.constant(s)), _even(w * s / h)]))
    if proto.frame_size is not None:
        fw, fh = proto.frame_size
        return tf.constant([fh, fw], tf.int32)
    return tf.stack([height, width])


def resize_frames(frames, proto: InputProtocol):
    """uint8 (m, H, W, c) -> uint8 (m, h, w, c) at the stored frame size (area interpolation,
    as read_video; unchanged when already that size)."""
    shape = tf.shape(frames)
    size = stored_size(shape[1], shape[2], proto)

    def resized():
        out = tf.image.resize(tf.cast(frames, tf.float32), size, method="area")
        return tf.cast(tf.clip_by_value(tf.round(out), 0.0, 255.0), tf.uint8)

    return tf.cond(tf.reduce_all(tf.equal(shape[1:3], size)), lambda: frames, resized)


def decode_frames(encoded, channels: int):
    """(m,) JPEG/PNG strings -> uint8 (m, H, W, channels) (all frames of one video share a
    size)."""
    return tf.map_fn(
        lambda s: tf.ensure_shape(tf.io.decode_image(s, channels=channels,
                                                     expand_animations=False),
                                  [None, None, channels]),
        encoded, fn_output_signature=tf.TensorSpec([None, None, channels], tf.uint8))


def video_views(proto: InputProtocol, num_crops: int, sources: Sequence, num_frames,
                encoded: bool):
    """One video -> float32 (V, T', S, S, C), the network input of its test views.

    sources: [frames] for RGB (uint8 (n, H, W, 3) or (n,) strings) or [x, y] for flow (uint8
    (n, H, W, 1) or (n,) strings each); num_frames: n.
    """
    from tfvid.data.pipeline import preprocess_video

    sampler = proto.sampler
    checked = tf.debugging.assert_greater(
        num_frames, 0, message=f"input {proto.raw}: a video needs at least one "
                               f"{'flow field' if proto.raw == 'flow' else 'frame'}")
    with tf.control_dependencies([checked]):
        idx = tf.reshape(sampler(tf.identity(num_frames), "test"), [-1])
    picked = [tf.gather(s, idx) for s in sources]
    if encoded:
        picked = [decode_frames(p, 1 if proto.raw == "flow" else 3) for p in picked]
    picked = [resize_frames(p, proto) for p in picked]
    gathered = _Gathered(sampler)
    common = dict(sampler=gathered, modality=proto.modality, mode="test",
                  input_size=proto.input_size, backbone=proto.backbone, num_crops=num_crops,
                  scale_size=proto.scale_size)
    if proto.raw == "flow":
        return preprocess_video(None, flow_x=picked[0][..., 0], flow_y=picked[1][..., 0],
                                **common)
    return preprocess_video(picked[0], **common)


def _model_logits(model, protocol: Protocol, views: dict):
    """Mean over views of the model's logits: views {model_key: (V, T, S, S, C)} -> (K,)."""
    if protocol.named_model_inputs:
        x = views
    else:
        (x,) = views.values()
    logits = tf.cast(model(x, training=False), tf.float32)
    return tf.reduce_mean(logits, axis=0)


def outputs_of(logits, class_names: Sequence[str]) -> dict:
    """{logits, probabilities, top_k_indices, top_k_classes} of logits (B, K)."""
    k = top_k(len(class_names))
    _, indices = tf.math.top_k(logits, k=k, sorted=True)
    return {"logits": logits,
            "probabilities": tf.nn.softmax(logits, axis=-1),
            "top_k_indices": tf.cast(indices, tf.int32),
            "top_k_classes": tf.gather(tf.constant(list(class_names), tf.string), indices)}


def _check_raw(x, proto: InputProtocol, encoded: bool):
    """In-graph checks of a raw input: rank, channels (or the (x, y) pair), T >= 1."""
    shape = tf.shape(x)
    if encoded:
        rank = 3 if proto.raw == "flow" else 2
        want = "string (B, T, 2) (x and y images)" if proto.raw == "flow" else "string (B, T)"
        padded = tf.concat([shape, tf.fill([4], -1)], 0)[:4]
        ok = padded[1] >= 1
        ok = tf.logical_and(ok, tf.equal(padded[rank], -1))
        if proto.raw == "flow":
            ok = tf.logical_and(ok, tf.equal(padded[2], 2))
    else:
        c = proto.channels
        want = f"uint8 (B, T, H, W, {c}) (T >= 1 frames of H, W >= 1 pixels)"
        padded = tf.concat([shape, tf.fill([6], -1)], 0)[:6]
        ok = tf.reduce_all(tf.stack([padded[1] >= 1, padded[2] >= 1, padded[3] >= 1,
                                     tf.equal(padded[4], c), tf.equal(padded[5], -1)]))
    return tf.debugging.Assert(ok, [f"input {proto.raw} must be a {want}; got shape", shape],
                               summarize=8, name=f"check_{proto.raw}_shape")


def _batch_logits(model, protocol: Protocol, batch_size, per_video, num_classes: int):
    """Logits (B, K): per_video(i) -> {model_key: views} for video i, one video at a time
    (each its own T)."""
    def one(i):
        return _model_logits(model, protocol, per_video(i))

    return tf.map_fn(one, tf.range(batch_size),
                     fn_output_signature=tf.TensorSpec([num_classes], tf.float32))


def _same_batch(tensors: dict):
    if len(tensors) < 2:
        return []
    sizes = tf.stack([tf.shape(t)[0] for t in tensors.values()])
    return [tf.debugging.Assert(tf.reduce_all(tf.equal(sizes, sizes[0])),
                                [f"inputs {' and '.join(tensors)} must hold the same number of "
                                 f"videos B; got batch sizes", sizes], name="check_batch_sizes")]


def frames_fn(model, protocol: Protocol, class_names, *, encoded: bool):
    """serve(**raw inputs) for serving_default (encoded=False) or encoded_frames."""
    protos = protocol.by_raw()
    num_classes = len(class_names)

    def serve(inputs: dict):
        checks = [_check_raw(inputs[r], p, encoded) for r, p in protos.items()]
        checks += _same_batch(inputs)
        with tf.control_dependencies(checks):
            inputs = {k: tf.identity(v) for k, v in inputs.items()}
        first = inputs[next(iter(protos))]

        def per_video(i):
            views = {}
            for raw, p in protos.items():
                x = inputs[raw][i]
                if raw == "flow":
                    sources = [x[..., 0], x[..., 1]] if encoded else [x[..., 0:1], x[..., 1:2]]
                else:
                    sources = [x]
                views[p.model_key] = video_views(p, protocol.num_crops, sources,
                                                 tf.shape(x)[0], encoded)
            return views

        logits = _batch_logits(model, protocol, tf.shape(first)[0], per_video, num_classes)
        return outputs_of(logits, class_names)

    return serve


def frames_specs(protocol: Protocol, *, encoded: bool) -> dict:
    specs = {}
    for raw, p in protocol.by_raw().items():
        if encoded:
            shape = [None, None, 2] if raw == "flow" else [None, None]
            specs[raw] = tf.TensorSpec(shape, tf.string, name=raw)
        else:
            specs[raw] = tf.TensorSpec([None, None, None, None, p.channels], tf.uint8, name=raw)
    return specs


def records_fn(model, protocol: Protocol, class_names):
    """serve(examples) for sequence_example: parse, sample, decode, views, average."""
    from tfvid.data import schema

    protos = protocol.by_raw()
    with_flow = "flow" in protos
    num_classes = len(class_names)

    def serve(examples):
        checked = tf.debugging.Assert(
            tf.equal(tf.rank(examples), 1),
            ["input examples must be a string (B,) vector of serialized SequenceExamples; got "
             "shape", tf.shape(examples)], name="check_examples_shape")
        with tf.control_dependencies([checked]):
            examples = tf.identity(examples)

        def per_video(i):
            ex = schema.parse_example(examples[i], with_flow=with_flow)
            views = {}
            for raw, p in protos.items():
                if raw == "flow":
                    n = tf.minimum(ex["num_flow"], tf.size(ex["flow_y"]))
                    sources = [ex["flow_x"], ex["flow_y"]]
                else:
                    n, sources = ex["num_frames"], [ex["frames"]]
                views[p.model_key] = video_views(p, protocol.num_crops, sources, n, True)
            return views

        logits = _batch_logits(model, protocol, tf.shape(examples)[0], per_video, num_classes)
        return outputs_of(logits, class_names)

    return serve


RECORDS_SPEC = tf.TensorSpec([None], tf.string, name=RECORDS_INPUT)
