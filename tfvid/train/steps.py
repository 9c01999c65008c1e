"""The training and evaluation steps of tfvid.train.loop: what one batch does.

Solver (Caffe / TSN reference semantics, docs/tsn.md)
    loss        mean over the valid examples of the global batch of sparse softmax cross
                entropy of the logits (float32 under every precision policy).
    clip        the gradient of that loss, summed over replicas, is clipped to global L2 norm
                `clip_norm` (TSN: 40), as Caffe's `clip_gradients` and the PyTorch TSN
                `clip_grad_norm` do. The clip sees the data-loss gradient only.
    decay       then `weight_decay * w` is added to the gradient of every kernel (Caffe's
                decay_mult 1; not biases or BN): the gradient of R(w) = 0.5 * weight_decay *
                sum_kernels ||w||^2, coupled with momentum (unlike Keras' decoupled decay).
    update      the optimizer (SGD with momentum) applies the gradients.
Under a keras.optimizers.LossScaleOptimizer (mixed_float16) the loss is multiplied by its
dynamic scale before differentiation; the clip threshold and the decay term are scaled with it,
so the optimizer's unscaling gives exactly the float32 update (a non-finite gradient makes it
skip the step and lower the scale).

Batches are dicts {'x' (B, ...), 'y' (B,), 'w' (B,) float32 weights (0: invalid example),
'id' (B,), 'problem' (B,)} made by `batch_dict` from build_dataset's elements.
"""
from __future__ import annotations

from typing import Callable

import keras
import tensorflow as tf

SUM = tf.distribute.ReduceOp.SUM


def kernel_variables(model: keras.Model) -> list:
    """Trainable variables that receive weight decay: those named '*kernel' (Caffe decay_mult 1)."""
    return [v for v in model.trainable_variables if v.name.split("/")[-1].endswith("kernel")]


def l2_penalty(model: keras.Model, weight_decay: float) -> tf.Tensor:
    """0.5 * weight_decay * sum of squared kernel entries (the decay term of the loss)."""
    kernels = kernel_variables(model)
    if not kernels or not weight_decay:
        return tf.constant(0.0)
    return 0.5 * weight_decay * tf.add_n([tf.reduce_sum(tf.square(tf.cast(v, tf.float32)))
                                          for v in kernels])


def batch_dict(batch):
    """{'x', 'y', 'w', 'id', 'problem'} of a build_dataset dict {'clip', 'label', 'id',
    'valid', 'problem'} (the last three optional) or of an (x, y) tuple; w = 1 for a valid
    example, 0 for an invalid one."""
    if isinstance(batch, dict):
        x, y = batch["clip"], batch["label"]
    else:
        x, y = batch[0], batch[1]
        batch = {}
    n = tf.shape(y)[0]
    valid = batch.get("valid")
    w = tf.ones([n], tf.float32) if valid is None else tf.cast(valid, tf.float32)
    problem = batch.get("problem")
    problem = tf.fill([n], "") if problem is None else problem
    ids = batch.get("id")
    ids = tf.fill([n], "") if ids is None else ids
    return {"x": x, "y": y, "w": w, "id": ids, "problem": problem}


def per_replica_fn(dataset_fn: Callable, skip: int = 0) -> Callable:
    """input_context -> dataset_fn(input_context) mapped through batch_dict, the first `skip`
    steps' batches dropped, with symbolic iterator checkpoints (positions, not buffers)."""
    def fn(input_context):
        ds = dataset_fn(input_context)
        if not isinstance(ds, tf.data.Dataset):
            raise TypeError(f"dataset_fn must return a tf.data.Dataset, got {type(ds).__name__}")
        ds = ds.map(lambda *b: batch_dict(b[0] if len(b) == 1 else b))
        if skip:  # each step takes one batch per replica fed by this pipeline
            ds = ds.skip(skip * (input_context.num_replicas_in_sync //
                                 input_context.num_input_pipelines))
        options = tf.data.Options()
        # Checkpoint iterator positions, not the elements in buffers (prefetched batches of
        # clips would make every checkpoint hundreds of MB).
        options.experimental_symbolic_checkpoint = True
        return ds.with_options(options)
    return fn


def logits_of(model, x, training):
    """float32 logits (B, classes) whatever the model's compute dtype; a (B, V, ...)
    multi-view batch for a (B, ...) model is averaged over V."""
    inputs = getattr(model, "inputs", None)
    if inputs and len(x.shape) == len(inputs[0].shape) + 1:
        b, v = tf.shape(x)[0], tf.shape(x)[1]
        flat = tf.reshape(x, tf.concat([[b * v], tf.shape(x)[2:]], 0))
        logits = tf.cast(model(flat, training=training), tf.float32)
        return tf.reduce_mean(tf.reshape(logits, [b, v, -1]), axis=1)
    return tf.cast(model(x, training=training), tf.float32)


def _cross_entropy(logits, y, w):
    safe_y = tf.where(w > 0, tf.cast(y, tf.int32), 0)   # a bad label is not looked up
    per_example = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=safe_y, logits=logits)
    correct = tf.cast(tf.equal(tf.argmax(logits, -1, output_type=tf.int32), safe_y), tf.float32)
    return per_example, correct


def make_train_step(model, optimizer, strategy, *, weight_decay: float,
                    clip_norm: float | None) -> Callable:
    """tf.function batch -> (loss, correct, count) summed over replicas; one optimizer step."""
    replicas = strategy.num_replicas_in_sync
    trainable = model.trainable_variables
    decayed = {id(v) for v in kernel_variables(model)}
    scaled = isinstance(optimizer, keras.optimizers.LossScaleOptimizer)

    def train_replica(batch):
        x, y, w = batch["x"], batch["y"], batch["w"]
        ctx = tf.distribute.get_replica_context()
        # The loss is the mean over the valid examples of the global batch (all valid: the
        # global batch size); invalid ones (bad_data='skip') weigh 0.
        valid = ctx.all_reduce(SUM, tf.reduce_sum(w))
        with tf.GradientTape() as tape:
            logits = logits_of(model, x, True)
            per_example, correct = _cross_entropy(logits, y, w)
            loss = tf.math.divide_no_nan(tf.reduce_sum(per_example * w), valid)
            if model.losses:
                loss += tf.nn.scale_regularization_loss(
                    tf.add_n([tf.cast(t, tf.float32) for t in model.losses]))
            target = optimizer.scale_loss(loss) if scaled else loss
        grads = tape.gradient(target, trainable)
        scale = tf.cast(optimizer.dynamic_scale, tf.float32) if scaled else 1.0
        pairs = [(g, v) for g, v in zip(grads, trainable) if g is not None]
        grads = [tf.convert_to_tensor(g) for g, _ in pairs]
        if clip_norm:  # clip the global gradient: sum over replicas first
            grads = ctx.all_reduce(SUM, grads)
            grads, _ = tf.clip_by_global_norm(grads, clip_norm * scale)
        share = 1.0 if clip_norm else 1.0 / replicas  # decay counted once after the optimizer's sum
        if weight_decay:   # (share * weight_decay is the same float as before for scale 1)
            coef = share * weight_decay * scale
            grads = [g + tf.cast(coef, g.dtype) * tf.cast(v, g.dtype) if id(v) in decayed
                     else g for g, (_, v) in zip(grads, pairs)]
        if clip_norm and replicas > 1:  # the optimizer sums over replicas again
            grads = [g / replicas for g in grads]
        optimizer.apply_gradients(zip(grads, [v for _, v in pairs]))
        return loss, tf.reduce_sum(w * correct), tf.reduce_sum(w)

    @tf.function
    def train_step(batch):
        loss, correct, count = strategy.run(train_replica, args=(batch,))
        return (strategy.reduce(SUM, loss, None), strategy.reduce(SUM, correct, None),
                strategy.reduce(SUM, count, None))
    return train_step


def make_eval_step(model, strategy) -> Callable:
    """tf.function batch -> [summed loss, correct, count] over replicas (no update)."""
    def eval_replica(batch):
        x, y, w = batch["x"], batch["y"], batch["w"]
        per_example, correct = _cross_entropy(logits_of(model, x, False), y, w)
        return (tf.reduce_sum(per_example * w), tf.reduce_sum(correct * w), tf.reduce_sum(w))

    @tf.function(reduce_retracing=True)
    def eval_step(batch):
        out = strategy.run(eval_replica, args=(batch,))
        return [strategy.reduce(SUM, t, None) for t in out]
    return eval_step
