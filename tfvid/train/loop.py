"""One custom training loop for every tf.distribute strategy.

Keras 3 `model.fit` fails under MultiWorkerMirroredStrategy (keras-team/keras#20585), so tfvid
trains with `strategy.run` inside a tf.function, per-replica losses scaled by
`tf.nn.compute_average_loss(global_batch_size=...)` and the Keras optimizer's `apply_gradients`,
which behaves the same under the default, one-device, mirrored and multi-worker strategies.

Solver (Caffe / TSN reference semantics)
    loss        mean over the global batch of sparse softmax cross entropy of the logits.
    clip        the gradient of that loss, summed over replicas, is clipped to global L2 norm
                `clip_norm` (TSN: 40), as Caffe's `clip_gradients` and the PyTorch TSN
                `clip_grad_norm` do. The clip sees the data-loss gradient only.
    decay       then `weight_decay * w` is added to the gradient of every kernel (conv, dense,
                depthwise/pointwise kernels; not biases, BN or other weights: Caffe's
                decay_mult 0 for them). This is the gradient of the L2 term
                R(w) = 0.5 * weight_decay * sum_kernels ||w||_2^2 added to the loss, i.e.
                Caffe's `weight_decay` regularisation (coupled with momentum, unlike the
                decoupled `weight_decay=` of Keras optimizers). Logged as `l2`.
    update      SGD with momentum (Keras SGD: v = m v - lr g; w += v, the same as Caffe's).
Layer regularisers (`model.losses`) are added to the loss scaled by 1 / replicas.

model_dir
    checkpoint, ckpt-<step>.*  tf.train.Checkpoint(model, optimizer, [iterator], [plateau])
    model_signature.json      variable shapes of the model, checked before resuming
    train/, val/              TensorBoard scalars (loss, accuracy, learning_rate, l2,
                              steps_per_sec, data_wait_fraction = iterator wait / step time),
                              written with tf.summary.write (no tensorboard package needed)
    final.weights.h5          final weights (Keras format), metrics.json: final numbers
                              (+ 'bad_videos', 'num_bad_videos', 'bad_val_videos', run_info)
    .lock                     held (tfvid.lock.folder_lock) by the training run using model_dir
Checkpoints also hold the Keras SeedGenerator states (dropout), and, with data_resume=
'checkpoint', the input iterator: a run killed and resumed ends with the weights of an
uninterrupted run. With several replicas BatchNormalization is synchronized (global-batch
statistics), so every replica keeps the same moving statistics.
Under multi-worker only the chief writes summaries, metrics and checkpoints in model_dir; the other
workers save their (identical) checkpoints to a temporary directory that is deleted afterwards.
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
from tensorflow.core.framework import summary_pb2

from tfvid.lock import folder_lock
from tfvid.train.schedules import PlateauController
from tfvid.train.strategy import is_chief, worker_id

log = logging.getLogger("tfvid.train")
SUM = tf.distribute.ReduceOp.SUM
# TensorBoard's scalar-plugin metadata, written with tf.summary.write so that logging does not
# need the tensorboard package (tf.summary.scalar imports it).
_SCALAR_METADATA = summary_pb2.SummaryMetadata(
    plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars"),
    data_class=summary_pb2.DATA_CLASS_SCALAR)


class TrainResult(NamedTuple):
    model: keras.Model
    metrics: dict


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


def model_signature(model: keras.Model) -> dict:
    """Shapes of all model variables in creation order (names vary with Keras auto-naming)."""
    return {"num_variables": len(model.variables),
            "shapes": [list(map(int, v.shape)) for v in model.variables],
            "num_params": int(sum(np.prod(v.shape) for v in model.variables))}


def _xy(batch):
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


def _per_replica(dataset_fn, skip: int = 0):
    def fn(input_context):
        ds = dataset_fn(input_context)
        if not isinstance(ds, tf.data.Dataset):
            raise TypeError(f"dataset_fn must return a tf.data.Dataset, got {type(ds).__name__}")
        ds = ds.map(lambda *b: _xy(b[0] if len(b) == 1 else b))
        if skip:  # each step takes one batch per replica fed by this pipeline
            ds = ds.skip(skip * (input_context.num_replicas_in_sync //
                                 input_context.num_input_pipelines))
        options = tf.data.Options()
        # Checkpoint iterator positions, not the elements in buffers (prefetched batches of
        # clips would make every checkpoint hundreds of MB).
        options.experimental_symbolic_checkpoint = True
        return ds.with_options(options)
    return fn


def synchronize_batchnorm(model: keras.Model) -> int:
    """Sets synchronized=True on every BatchNormalization layer of `model` (nested models
    included): batch statistics are all-reduced over the replicas, so every replica normalises
    with, and updates its moving statistics from, the statistics of the global batch. Returns
    the number of layers changed. Call before the model is traced in a training step."""
    count = 0
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if isinstance(layer, keras.layers.BatchNormalization) and not layer.synchronized:
            layer.synchronized = True
            count += 1
    return count


def _rng_variables(model: keras.Model) -> list:
    """State variables of the Keras SeedGenerators of `model` (dropout and other random layers)
    and the global one: model.variables holds them but tf.train.Checkpoint(model) does not."""
    weights = {id(v) for v in model.weights}
    found = [v for v in model.variables if id(v) not in weights]
    try:
        from keras.src.random.seed_generator import global_seed_generator
        found.append(global_seed_generator().state)
    except (ImportError, AttributeError):
        pass
    return found


class _BadData:
    """Invalid examples of the build_dataset batches: fail (ValueError with the problem) or log
    each bad video once (by id) and list it."""

    def __init__(self, policy: str, strategy):
        self.policy, self.strategy, self.seen = policy, strategy, {}

    def check(self, batch, what: str) -> None:
        local = self.strategy.experimental_local_results
        problems = np.concatenate([np.reshape(p.numpy(), [-1]) for p in local(batch["problem"])])
        if not problems.any():
            return
        ids = np.concatenate([np.reshape(i.numpy(), [-1]) for i in local(batch["id"])])
        for vid, problem in zip(ids, problems):
            if not problem:
                continue
            text = problem.decode("utf-8", "replace")
            if self.policy == "fail":
                raise ValueError(f"bad {what} data: {text} (bad_data='skip' trains without it)")
            key = vid.decode("utf-8", "replace") or text
            if key not in self.seen:
                self.seen[key] = text
                log.warning("skipping bad %s video: %s", what, text)


def _logits(model, x, training):
    """Logits (B, classes); a (B, V, ...) multi-view batch for a (B, ...) model is averaged."""
    inputs = getattr(model, "inputs", None)
    if inputs and len(x.shape) == len(inputs[0].shape) + 1:
        b, v = tf.shape(x)[0], tf.shape(x)[1]
        flat = tf.reshape(x, tf.concat([[b * v], tf.shape(x)[2:]], 0))
        logits = tf.cast(model(flat, training=training), tf.float32)
        return tf.reduce_mean(tf.reshape(logits, [b, v, -1]), axis=1)
    return tf.cast(model(x, training=training), tf.float32)


def _check_signature(model_dir: str, model: keras.Model, checkpoint: str) -> None:
    path = os.path.join(model_dir, "model_signature.json")
    if not os.path.exists(path):
        return
    with open(path) as f:
        saved = json.load(f)
    now = model_signature(model)
    if saved["shapes"] == now["shapes"]:
        return
    first = next((i for i, (a, b) in enumerate(zip(saved["shapes"], now["shapes"])) if a != b),
                 min(len(saved["shapes"]), len(now["shapes"])))
    detail = (f"variable {first}: saved {saved['shapes'][first] if first < len(saved['shapes']) else None}"
              f" vs now {now['shapes'][first] if first < len(now['shapes']) else None}")
    raise ValueError(
        f"checkpoint {checkpoint} was written by a different model ({saved['num_variables']} "
        f"variables, {saved['num_params']} parameters; this model has {now['num_variables']}, "
        f"{now['num_params']}; first difference at {detail}). Use another model_dir, or "
        f"resume=False with an empty one.")


def train(model_fn: Callable[[], keras.Model], dataset_fn: Callable, *, model_dir: str,
          steps: int, global_batch_size: int, strategy: tf.distribute.Strategy | None = None,
          learning_rate=0.001, momentum: float = 0.9, weight_decay: float = 5e-4,
          clip_norm: float | None = None, val_dataset_fn: Callable | None = None,
          eval_every: int = 0, log_every: int = 20, checkpoint_every: int = 500,
          keep_checkpoints: int = 3, resume: bool = True, seed: int = 0,
          data_resume: str = "checkpoint", step_callback: Callable | None = None,
          progress: bool = True, bad_data: str = "skip",
          run_info: dict | None = None, lock: bool = True) -> TrainResult:
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
    if bad_data not in ("skip", "fail"):
        raise ValueError(f"bad_data must be 'skip' or 'fail', got {bad_data!r}")
    plateau = learning_rate if isinstance(learning_rate, PlateauController) else None
    if plateau is not None and not (val_dataset_fn and eval_every > 0):
        raise ValueError("a plateau lr schedule needs val_dataset_fn and eval_every > 0")
    strategy = strategy or tf.distribute.get_strategy()
    replicas = strategy.num_replicas_in_sync
    if global_batch_size % replicas:
        raise ValueError(f"global batch size {global_batch_size} is not divisible by the "
                         f"{replicas} replicas")
    chief = is_chief(strategy)
    os.makedirs(model_dir, exist_ok=True)
    with (folder_lock(os.path.join(model_dir, ".lock"), "training run") if chief and lock
          else contextlib.nullcontext()):
        ckpt_dir = model_dir
        write_dir = ckpt_dir if chief else os.path.join(model_dir, f".tmp_{worker_id(strategy)}")
        os.makedirs(write_dir, exist_ok=True)

        keras.utils.set_random_seed(seed)
        with strategy.scope():
            model = model_fn()
            if replicas > 1:
                synced = synchronize_batchnorm(model)
                if synced:
                    log.info("synchronized BatchNormalization over %d replicas (%d layers)",
                             replicas, synced)
            lr_arg = plateau.initial_learning_rate if plateau is not None else learning_rate
            optimizer = keras.optimizers.SGD(learning_rate=lr_arg, momentum=momentum)
            optimizer.build(model.trainable_variables)
        if plateau is not None:
            plateau.attach(optimizer.learning_rate)
        tracked = {"model": model, "optimizer": optimizer}
        rng = _rng_variables(model)
        if rng:      # dropout etc.: a resumed run draws the same random numbers
            tracked["rng"] = {f"state_{i}": v for i, v in enumerate(rng)}
        if plateau is not None:
            tracked["plateau"] = plateau
        iterator = None
        if data_resume == "checkpoint":
            iterator = iter(strategy.distribute_datasets_from_function(_per_replica(dataset_fn)))
            if isinstance(iterator, tf.__internal__.tracking.Trackable):
                tracked["iterator"] = iterator
            else:
                log.warning("%s cannot checkpoint its input iterator; on resume the data stream "
                            "skips the batches already used (data_resume='skip')",
                            type(strategy).__name__)
                iterator, data_resume = None, "skip"
        checkpoint = tf.train.Checkpoint(**tracked)
        manager = tf.train.CheckpointManager(checkpoint, write_dir, max_to_keep=keep_checkpoints)
        latest = tf.train.latest_checkpoint(ckpt_dir)
        if latest and not resume:
            raise ValueError(f"{ckpt_dir} already holds checkpoints ({latest}); pass resume=True to "
                             f"continue that run or use an empty model_dir")
        if latest:
            _check_signature(model_dir, model, latest)
            try:
                checkpoint.restore(latest).assert_existing_objects_matched()
            except (AssertionError, ValueError, tf.errors.OpError) as err:
                raise ValueError(f"cannot resume from {latest}: it does not match this model, "
                                 f"optimizer or input pipeline ({err})") from err
            log.info("resumed from %s at step %d", latest, int(optimizer.iterations.numpy()))
        elif chief:
            with open(os.path.join(model_dir, "model_signature.json"), "w") as f:
                json.dump(model_signature(model), f)

        start = int(optimizer.iterations.numpy())
        if iterator is None:
            skip = start if data_resume == "skip" else 0
            iterator = iter(strategy.distribute_datasets_from_function(
                _per_replica(dataset_fn, skip=skip)))
        trainable = model.trainable_variables
        decayed = {id(v) for v in kernel_variables(model)}

        def train_replica(batch):
            x, y, w = batch["x"], batch["y"], batch["w"]
            ctx = tf.distribute.get_replica_context()
            # The loss is the mean over the valid examples of the global batch (all valid: the
            # global batch size); invalid ones (bad_data='skip') weigh 0.
            valid = ctx.all_reduce(SUM, tf.reduce_sum(w))
            with tf.GradientTape() as tape:
                logits = _logits(model, x, True)
                safe_y = tf.where(w > 0, tf.cast(y, tf.int32), 0)   # a bad label is not looked up
                per_example = tf.nn.sparse_softmax_cross_entropy_with_logits(
                    labels=safe_y, logits=logits)
                loss = tf.math.divide_no_nan(tf.reduce_sum(per_example * w), valid)
                if model.losses:
                    loss += tf.nn.scale_regularization_loss(tf.add_n(model.losses))
            grads = tape.gradient(loss, trainable)
            pairs = [(g, v) for g, v in zip(grads, trainable) if g is not None]
            grads = [tf.convert_to_tensor(g) for g, _ in pairs]
            if clip_norm:  # clip the global gradient: sum over replicas first
                grads = ctx.all_reduce(SUM, grads)
                grads, _ = tf.clip_by_global_norm(grads, clip_norm)
            share = 1.0 if clip_norm else 1.0 / replicas  # decay counted once after the optimizer's sum
            if weight_decay:
                grads = [g + share * weight_decay * tf.cast(v, g.dtype) if id(v) in decayed else g
                         for g, (_, v) in zip(grads, pairs)]
            if clip_norm and replicas > 1:  # the optimizer sums over replicas again
                grads = [g / replicas for g in grads]
            optimizer.apply_gradients(zip(grads, [v for _, v in pairs]))
            correct = tf.reduce_sum(w * tf.cast(tf.equal(
                tf.argmax(logits, -1, output_type=tf.int32), safe_y), tf.float32))
            return loss, correct, tf.reduce_sum(w)

        @tf.function
        def train_step(batch):
            loss, correct, count = strategy.run(train_replica, args=(batch,))
            return (strategy.reduce(SUM, loss, None), strategy.reduce(SUM, correct, None),
                    strategy.reduce(SUM, count, None))

        def eval_replica(batch):
            x, y, w = batch["x"], batch["y"], batch["w"]
            logits = _logits(model, x, False)
            safe_y = tf.where(w > 0, tf.cast(y, tf.int32), 0)
            per_example = tf.nn.sparse_softmax_cross_entropy_with_logits(
                labels=safe_y, logits=logits)
            correct = tf.cast(tf.equal(tf.argmax(logits, -1, output_type=tf.int32), safe_y),
                              tf.float32)
            return (tf.reduce_sum(per_example * w), tf.reduce_sum(correct * w),
                    tf.reduce_sum(w))

        @tf.function(reduce_retracing=True)
        def eval_step(batch):
            out = strategy.run(eval_replica, args=(batch,))
            return [strategy.reduce(SUM, t, None) for t in out]

        def evaluate() -> dict:
            totals = np.zeros(3)
            dist_val = strategy.distribute_datasets_from_function(_per_replica(val_dataset_fn))
            for batch in dist_val:
                bad_val.check(batch, "validation")
                totals += [float(t) for t in eval_step(batch)]
            if totals[2] == 0:
                raise ValueError("the validation dataset is empty")
            return {"val_loss": float(totals[0] / totals[2]),
                    "val_accuracy": float(totals[1] / totals[2]),
                    "val_examples": int(totals[2])}

        def current_lr() -> float:
            value = optimizer.learning_rate  # Keras evaluates schedules at optimizer.iterations
            return float(tf.convert_to_tensor(value).numpy())

        if chief:
            writers = {"train": tf.summary.create_file_writer(os.path.join(model_dir, "train")),
                       "val": tf.summary.create_file_writer(os.path.join(model_dir, "val"))}
        else:
            writers = {"train": tf.summary.create_noop_writer(), "val": tf.summary.create_noop_writer()}

        def summarise(kind, step_, values):
            with writers[kind].as_default(step=step_):
                for key, value in values.items():
                    tf.summary.write(key, tf.constant(value, tf.float32), metadata=_SCALAR_METADATA)

        bad_train, bad_val = _BadData(bad_data, strategy), _BadData(bad_data, strategy)
        bar = None
        if progress and chief:
            from tfvid.progress import progress_bar
            bar = progress_bar(total=steps, initial=min(start, steps), unit="step", dynamic_ncols=True)
        window = {"loss": 0.0, "correct": 0.0, "count": 0.0, "wait": 0.0, "time": 0.0, "steps": 0}
        metrics: dict = {}
        val: dict = {}
        run_time, run_wait, run_steps = 0.0, 0.0, 0
        step = start
        try:
            while step < steps:
                t0 = time.perf_counter()
                try:
                    batch = next(iterator)
                except tf.errors.DataLossError as err:
                    raise tf.errors.DataLossError(
                        None, None, f"reading the training data for step {step + 1}: "
                        f"{err.message} (a truncated or corrupt TFRecord shard: "
                        f"tfvid.data.pipeline.verify_records(files) names it)") from None
                except (StopIteration, tf.errors.OutOfRangeError):
                    if step == start and run_steps == 0 and start == 0:
                        raise ValueError("the training dataset is empty (no batch at all); check the "
                                         "files and that batch_size <= number of videos") from None
                    raise ValueError(f"the training dataset ran out at step {step} of {steps}; it "
                                     f"must repeat (e.g. dataset.repeat())") from None
                bad_train.check(batch, "training")
                t1 = time.perf_counter()
                loss, correct, count = train_step(batch)
                step += 1
                loss = float(loss)
                t2 = time.perf_counter()
                if not np.isfinite(loss):
                    raise FloatingPointError(f"loss is {loss} at step {step}; lower the learning rate "
                                             f"or check the inputs")
                for key, value in (("loss", loss * float(count)), ("correct", float(correct)),
                                   ("count", float(count)), ("wait", t1 - t0), ("time", t2 - t0),
                                   ("steps", 1)):
                    window[key] += value
                run_time, run_wait, run_steps = run_time + t2 - t0, run_wait + t1 - t0, run_steps + 1
                logs = {"loss": loss, "accuracy": float(correct) / max(float(count), 1.0)}
                if step % log_every == 0 or step == steps:
                    logs_w = {"loss": window["loss"] / max(window["count"], 1.0),
                              "accuracy": window["correct"] / max(window["count"], 1.0),
                              "learning_rate": current_lr(),
                              "l2": float(l2_penalty(model, weight_decay)),
                              "steps_per_sec": window["steps"] / window["time"],
                              "data_wait_fraction": window["wait"] / window["time"]}
                    summarise("train", step, logs_w)
                    metrics.update(logs_w)
                    log.info("step %d: %s", step, ", ".join(f"{k} {v:.4g}" for k, v in logs_w.items()))
                    window = dict.fromkeys(window, 0.0)
                if val_dataset_fn is not None and eval_every > 0 and (step % eval_every == 0 or
                                                                      step == steps):
                    val = evaluate()
                    summarise("val", step, {k: v for k, v in val.items() if k != "val_examples"})
                    log.info("step %d: val_accuracy %.4f, val_loss %.4f", step,
                             val["val_accuracy"], val["val_loss"])
                    if plateau is not None and plateau.update(val["val_accuracy"]):
                        log.info("step %d: validation plateau, learning rate now %.3g", step,
                                 current_lr())
                if step % checkpoint_every == 0 or step == steps:
                    manager.save(checkpoint_number=step)
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{loss:.3f}", steps_s=f"{run_steps / run_time:.2f}",
                                    wait=f"{run_wait / run_time:.0%}")
                if step_callback is not None:
                    step_callback(step, logs)
        finally:
            if bar is not None:
                bar.close()
            for w in writers.values():
                w.flush()
        if val_dataset_fn is not None and not val and step > start:
            val = evaluate()
        previous = os.path.join(model_dir, "metrics.json")
        if run_steps == 0 and os.path.exists(previous):  # already finished: keep its numbers
            log.info("model_dir %s is already at step %d >= %d; nothing to train", model_dir, start,
                     steps)
            if not chief:
                shutil.rmtree(write_dir, ignore_errors=True)
            with open(previous) as f:
                return TrainResult(model, {**json.load(f), "steps_this_run": 0,
                                           "resumed_from_step": start})
        metrics = {"final_step": step, "loss": metrics.get("loss"),
                   "train_accuracy": metrics.get("accuracy"),
                   "learning_rate": current_lr(), "steps_per_sec": run_steps / run_time if run_time else None,
                   "data_wait_fraction": run_wait / run_time if run_time else None,
                   "steps_this_run": run_steps, "resumed_from_step": start,
                   "num_replicas": replicas, "global_batch_size": global_batch_size, **val,
                   "bad_videos": sorted(bad_train.seen.values()),
                   "num_bad_videos": len(bad_train.seen),
                   "bad_val_videos": sorted(bad_val.seen.values()), **(run_info or {})}
        if chief:
            model.save_weights(os.path.join(model_dir, "final.weights.h5"))
            with open(os.path.join(model_dir, "metrics.json"), "w") as f:
                json.dump(metrics, f, indent=2)
        else:
            shutil.rmtree(write_dir, ignore_errors=True)
        return TrainResult(model, metrics)
