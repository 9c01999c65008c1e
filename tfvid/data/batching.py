"""Batching clips whose T varies by video (MDI windows, StNet's short-video rule)
(docs/dynamic_images.md, docs/stnet.md).

    cyclic_pad(clip, length)           repeat a clip's own steps cyclically to `length`
    batch_variable_length(ds, ...)     batches with 'num_steps' (B,) and cyclic padding
"""
from __future__ import annotations

import tensorflow as tf


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


def batch_variable_length(ds, batch_size, drop_remainder, fixed_steps, num_parallel_calls):
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
