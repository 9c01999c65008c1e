"""One custom training loop for every tf.distribute strategy.

Keras 3 `model.fit` fails under MultiWorkerMirroredStrategy (keras-team/keras#20585), so tfvid
trains with `strategy.run` inside a tf.function, per-replica losses scaled by
`tf.nn.compute_average_loss(global_batch_size=...)` and the Keras optimizer's `apply_gradients`,
which behaves the same under the default, one-device, mirrored and multi-worker strategies.

The parts, one idea each:
    tfvid.train.steps        the solver (Caffe / TSN semantics: loss, global-norm clip, L2
                             decay on kernels, SGD with momentum) as train / eval step functions
    tfvid.train.checkpoints  what a checkpoint holds, resume at the exact step
    tfvid.train.metrics      the log window, TensorBoard scalars, metrics.json
    tfvid.train.bad_data     invalid videos: skip (logged once, listed) or fail
    tfvid.train.precision    float32 / mixed_bfloat16 / mixed_float16 (the Keras dtype policy
                             the model is built under; logits and loss stay float32)
This module runs them: build the model and optimizer, restore, iterate, evaluate, save.

model_dir
    checkpoint, ckpt-<step>.*, model_signature.json   (tfvid.train.checkpoints)
    train/, val/, metrics.json                        (tfvid.train.metrics)
    final.weights.h5          final weights (Keras format)
    .lock                     held (tfvid.lock.folder_lock) by the training run using model_dir
With several replicas BatchNormalization is synchronized (global-batch statistics), so every
replica keeps the same moving statistics. Under multi-worker only the chief writes summaries,
metrics and checkpoints in model_dir; the other workers save their (identical) checkpoints to a
temporary directory that is deleted afterwards.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import time
from typing import Callable, NamedTuple

import keras
import numpy as np
import tensorflow as tf

from tfvid.lock import folder_lock
from tfvid.train.bad_data import POLICIES as BAD_DATA, BadData
from tfvid.train.checkpoints import model_signature, restore_or_start, tracked_objects
from tfvid.train.metrics import StepWindow, Summaries, run_metrics
from tfvid.train.precision import choose_precision, dtype_policy_scope, wrap_optimizer
from tfvid.train.schedules import PlateauController
from tfvid.train.steps import (SUM, kernel_variables, l2_penalty, make_eval_step,
                               make_train_step, per_replica_fn)
from tfvid.train.strategy import is_chief, synchronize_batchnorm, worker_id

log = logging.getLogger("tfvid.train")
__all__ = ["SUM", "TrainResult", "kernel_variables", "l2_penalty", "model_signature",
           "synchronize_batchnorm", "train"]


class TrainResult(NamedTuple):
    model: keras.Model
    metrics: dict


def train(model_fn: Callable[[], keras.Model], dataset_fn: Callable, *, model_dir: str,
          steps: int, global_batch_size: int, strategy: tf.distribute.Strategy | None = None,
          learning_rate=0.001, momentum: float = 0.9, weight_decay: float = 5e-4,
          clip_norm: float | None = None, val_dataset_fn: Callable | None = None,
          eval_every: int = 0, log_every: int = 20, checkpoint_every: int = 500,
          keep_checkpoints: int = 3, resume: bool = True, seed: int = 0,
          data_resume: str = "checkpoint", step_callback: Callable | None = None,
          progress: bool = True, bad_data: str = "skip",
          run_info: dict | None = None, lock: bool = True,
          precision: str = "float32") -> TrainResult:
    """Trains `model_fn()` on `dataset_fn` for `steps` optimizer steps; returns (model, metrics).

    model_fn        () -> keras.Model returning logits; called inside strategy.scope().
    dataset_fn      (tf.distribute.InputContext) -> per-replica tf.data.Dataset of batches of
                    input_context.get_per_replica_batch_size(global_batch_size) elements, as
                    dicts {'clip', 'label', ...} or (x, y); it must repeat (run for `steps`).
    learning_rate   float, keras LearningRateSchedule (e.g. MultiStepSchedule) or
                    PlateauController (needs val_dataset_fn and eval_every; updated after each
                    evaluation with the validation accuracy).
    val_dataset_fn  like dataset_fn but finite; evaluated every `eval_every` steps and at the end.
                    Clips (B, V, ...) with one more axis than the model input are averaged over V.
    resume          continue from the latest checkpoint in model_dir at its exact step (model,
                    optimizer incl. momentum and iteration count, plateau state). resume=False
                    refuses a model_dir that already holds checkpoints.
    data_resume     where the data stream continues after a resume: 'checkpoint' saves the
                    input iterator position in the checkpoint (single-replica strategies; the
                    others cannot and fall back to 'skip'), 'skip' drops the `step` batches
                    already used (exact for deterministic data, but reads them again),
                    'restart' starts the stream afresh.
                    With 'checkpoint' a resumed run repeats an uninterrupted one exactly: the
                    iterator position, the model's random state (Keras SeedGenerators: dropout)
                    and build_dataset's position-derived seeds are restored.
    step_callback   optional (step, logs) -> None after every step, e.g. for custom stopping
                    (raise to abort; the last saved checkpoint stays).
    bad_data        batches with 'valid'/'problem' (build_dataset): 'skip' gives invalid
                    examples zero weight (the loss is the mean over the valid examples of the
                    global batch; accuracy counts valid ones only), logs each bad video once
                    and lists them in metrics 'bad_videos'; 'fail' raises ValueError with the
                    problem text. Validation batches are treated the same way.
    run_info        extra entries for metrics.json (e.g. the input kernels' status).
    precision       'float32', 'mixed_bfloat16', 'mixed_float16' or 'auto'
                    (tfvid.train.precision.choose_precision): the Keras dtype policy model_fn
                    runs under (variables stay float32; logits and loss are float32);
                    mixed_float16 wraps the optimizer in a LossScaleOptimizer. metrics.json
                    records 'precision' and 'precision_reason'.
    Replicas: with more than one replica every BatchNormalization is synchronized (batch
    statistics of the global batch), so all replicas keep the same moving statistics.
    model_dir is locked for the whole run (tfvid.lock, `model_dir/.lock`, chief only): a second
    run in the same model_dir raises tfvid.lock.LockedError naming the holder; the lock of a
    dead process is taken over. lock=False: the caller holds that lock (the train job holds it
    from before it writes run_config.json).
    Errors: ValueError for an empty or exhausted training dataset, a checkpoint of a different
    model, existing checkpoints with resume=False, bad arguments, bad data with
    bad_data='fail'; tf.errors.DataLossError (with the step) for a corrupt TFRecord shard met
    while training.
    """
    if steps <= 0 or global_batch_size <= 0:
        raise ValueError(f"steps and global_batch_size must be positive, got {steps}, "
                         f"{global_batch_size}")
    if data_resume not in ("checkpoint", "skip", "restart"):
        raise ValueError(f"data_resume must be 'checkpoint', 'skip' or 'restart', got {data_resume!r}")
    if bad_data not in BAD_DATA:
        raise ValueError(f"bad_data must be 'skip' or 'fail', got {bad_data!r}")
    policy, reason = choose_precision(precision)
    plateau = learning_rate if isinstance(learning_rate, PlateauController) else None
    if plateau is not None and not (val_dataset_fn and eval_every > 0):
        raise ValueError("a plateau lr schedule needs val_dataset_fn and eval_every > 0")
    strategy = strategy or tf.distribute.get_strategy()
    replicas = strategy.num_replicas_in_sync
    if global_batch_size % replicas:
        raise ValueError(f"global batch size {global_batch_size} is not divisible by the "
                         f"{replicas} replicas")
    chief = is_chief(strategy)
    bad_train, bad_val = BadData(bad_data, strategy), BadData(bad_data, strategy)
    os.makedirs(model_dir, exist_ok=True)
    with (folder_lock(os.path.join(model_dir, ".lock"), "training run") if chief and lock
          else contextlib.nullcontext()):
        write_dir = model_dir if chief else os.path.join(model_dir, f".tmp_{worker_id(strategy)}")
        os.makedirs(write_dir, exist_ok=True)
        if policy != "float32":
            log.info("precision %s (%s)", policy, reason)
        keras.utils.set_random_seed(seed)
        model, optimizer = _build(model_fn, strategy, plateau, learning_rate, momentum, policy)
        tracked = tracked_objects(model, optimizer, plateau)
        iterator = None
        if data_resume == "checkpoint":
            iterator = iter(strategy.distribute_datasets_from_function(per_replica_fn(dataset_fn)))
            if isinstance(iterator, tf.__internal__.tracking.Trackable):
                tracked["iterator"] = iterator
            else:
                log.warning("%s cannot checkpoint its input iterator; on resume the data stream "
                            "skips the batches already used (data_resume='skip')",
                            type(strategy).__name__)
                iterator, data_resume = None, "skip"
        checkpoint = tf.train.Checkpoint(**tracked)
        manager = tf.train.CheckpointManager(checkpoint, write_dir, max_to_keep=keep_checkpoints)
        start = restore_or_start(checkpoint, model, optimizer, model_dir, resume=resume,
                                 chief=chief)
        if iterator is None:
            skip = start if data_resume == "skip" else 0
            iterator = iter(strategy.distribute_datasets_from_function(
                per_replica_fn(dataset_fn, skip=skip)))
        train_step = make_train_step(model, optimizer, strategy, weight_decay=weight_decay,
                                     clip_norm=clip_norm)
        eval_step = make_eval_step(model, strategy)

        def evaluate() -> dict:
            totals = np.zeros(3)
            for batch in strategy.distribute_datasets_from_function(
                    per_replica_fn(val_dataset_fn)):
                bad_val.check(batch, "validation")
                totals += [float(t) for t in eval_step(batch)]
            if totals[2] == 0:
                raise ValueError("the validation dataset is empty")
            return {"val_loss": float(totals[0] / totals[2]),
                    "val_accuracy": float(totals[1] / totals[2]), "val_examples": int(totals[2])}

        def current_lr() -> float:
            value = optimizer.learning_rate  # Keras evaluates schedules at optimizer.iterations
            return float(tf.convert_to_tensor(value).numpy())

        summaries = Summaries(model_dir, chief)
        bar = None
        if progress and chief:
            from tfvid.progress import progress_bar
            bar = progress_bar(total=steps, initial=min(start, steps), unit="step", dynamic_ncols=True)
        window, last, val = StepWindow(), {}, {}
        step = start
        try:
            while step < steps:
                t0 = time.perf_counter()
                batch = _next_batch(iterator, step, steps, first=start == 0 and step == 0)
                bad_train.check(batch, "training")
                t1 = time.perf_counter()
                loss, correct, count = train_step(batch)
                step += 1
                loss = float(loss)
                t2 = time.perf_counter()
                if not np.isfinite(loss):
                    raise FloatingPointError(f"loss is {loss} at step {step}; lower the learning rate "
                                             f"or check the inputs")
                window.add(loss=loss, correct=float(correct), count=float(count), wait=t1 - t0,
                           time=t2 - t0)
                logs = {"loss": loss, "accuracy": float(correct) / max(float(count), 1.0)}
                if step % log_every == 0 or step == steps:
                    last = window.flush(learning_rate=current_lr(),
                                        l2=float(l2_penalty(model, weight_decay)))
                    summaries.write("train", step, last)
                    log.info("step %d: %s", step, ", ".join(f"{k} {v:.4g}" for k, v in last.items()))
                if val_dataset_fn is not None and eval_every > 0 and (step % eval_every == 0 or
                                                                      step == steps):
                    val = evaluate()
                    summaries.write("val", step, {k: v for k, v in val.items()
                                                  if k != "val_examples"})
                    log.info("step %d: val_accuracy %.4f, val_loss %.4f", step,
                             val["val_accuracy"], val["val_loss"])
                    if plateau is not None and plateau.update(val["val_accuracy"]):
                        log.info("step %d: validation plateau, learning rate now %.3g", step,
                                 current_lr())
                if step % checkpoint_every == 0 or step == steps:
                    manager.save(checkpoint_number=step)
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{loss:.3f}", steps_s=f"{window.steps_per_sec():.2f}",
                                    wait=f"{window.data_wait_fraction():.0%}")
                if step_callback is not None:
                    step_callback(step, logs)
        finally:
            if bar is not None:
                bar.close()
            summaries.flush()
        if val_dataset_fn is not None and not val and step > start:
            val = evaluate()
        previous = os.path.join(model_dir, "metrics.json")
        if window.run_steps == 0 and os.path.exists(previous):  # already finished: keep its numbers
            log.info("model_dir %s is already at step %d >= %d; nothing to train", model_dir,
                     start, steps)
            if not chief:
                shutil.rmtree(write_dir, ignore_errors=True)
            with open(previous) as f:
                return TrainResult(model, {**json.load(f), "steps_this_run": 0,
                                           "resumed_from_step": start})
        metrics = run_metrics(step=step, start=start, last=last, learning_rate=current_lr(),
                              window=window, replicas=replicas,
                              global_batch_size=global_batch_size, val=val, bad_train=bad_train,
                              bad_val=bad_val, run_info={"precision": policy,
                                                         "precision_reason": reason,
                                                         **(run_info or {})})
        if chief:
            model.save_weights(os.path.join(model_dir, "final.weights.h5"))
            with open(previous, "w") as f:
                json.dump(metrics, f, indent=2)
        else:
            shutil.rmtree(write_dir, ignore_errors=True)
        return TrainResult(model, metrics)


def _build(model_fn, strategy, plateau, learning_rate, momentum, policy):
    """(model, optimizer) inside strategy.scope(): model_fn() under the precision `policy`,
    BatchNormalization synchronized over several replicas, SGD with momentum (loss-scaled for
    mixed_float16) built on the trainable variables."""
    replicas = strategy.num_replicas_in_sync
    with strategy.scope():
        with dtype_policy_scope(policy):
            model = model_fn()
        if replicas > 1:
            synced = synchronize_batchnorm(model)
            if synced:
                log.info("synchronized BatchNormalization over %d replicas (%d layers)",
                         replicas, synced)
        lr_arg = plateau.initial_learning_rate if plateau is not None else learning_rate
        optimizer = wrap_optimizer(keras.optimizers.SGD(learning_rate=lr_arg, momentum=momentum),
                                   policy)
        optimizer.build(model.trainable_variables)
    if plateau is not None:
        plateau.attach(optimizer.learning_rate)
    return model, optimizer


def _next_batch(iterator, step: int, steps: int, *, first: bool):
    """next(iterator) for step `step` + 1; DataLossError naming the step for a corrupt shard,
    ValueError for an empty (first) or exhausted training dataset."""
    try:
        return next(iterator)
    except tf.errors.DataLossError as err:
        raise tf.errors.DataLossError(
            None, None, f"reading the training data for step {step + 1}: {err.message} (a "
            f"truncated or corrupt TFRecord shard: tfvid.data.pipeline.verify_records(files) "
            f"names it)") from None
    except (StopIteration, tf.errors.OutOfRangeError):
        if first:
            raise ValueError("the training dataset is empty (no batch at all); check the files "
                             "and that batch_size <= number of videos") from None
        raise ValueError(f"the training dataset ran out at step {step} of {steps}; it must "
                         f"repeat (e.g. dataset.repeat())") from None
