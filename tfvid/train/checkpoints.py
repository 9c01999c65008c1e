"""Checkpoint and resume of tfvid.train.loop: what a checkpoint holds and how a run restarts.

model_dir
    checkpoint, ckpt-<step>.*  tf.train.Checkpoint(model, optimizer, [rng], [iterator], [plateau])
    model_signature.json      variable shapes of the model, checked before resuming

A checkpoint holds the model, the optimizer (momentum, iteration count; a LossScaleOptimizer's
scale), the Keras SeedGenerator states (dropout: `rng_variables`), the plateau controller and,
with data_resume='checkpoint', the input iterator: a run killed and resumed ends with the
weights of an uninterrupted run. Variables are float32 under every precision policy, so a
mixed-precision run restores into a float32 model (tfvid.train.run_dir.restore).
"""
from __future__ import annotations

import json
import logging
import os

import keras
import numpy as np
import tensorflow as tf

log = logging.getLogger("tfvid.train")
SIGNATURE = "model_signature.json"


def model_signature(model: keras.Model) -> dict:
    """Shapes of all model variables in creation order (names vary with Keras auto-naming)."""
    return {"num_variables": len(model.variables),
            "shapes": [list(map(int, v.shape)) for v in model.variables],
            "num_params": int(sum(np.prod(v.shape) for v in model.variables))}


def rng_variables(model: keras.Model) -> list:
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


def tracked_objects(model, optimizer, plateau=None) -> dict:
    """The objects a tf.train.Checkpoint of the run tracks (the iterator is added by the loop)."""
    tracked = {"model": model, "optimizer": optimizer}
    rng = rng_variables(model)
    if rng:      # dropout etc.: a resumed run draws the same random numbers
        tracked["rng"] = {f"state_{i}": v for i, v in enumerate(rng)}
    if plateau is not None:
        tracked["plateau"] = plateau
    return tracked


def check_signature(model_dir: str, model: keras.Model, checkpoint: str) -> None:
    """ValueError naming the first differing variable when model_dir's model_signature.json
    was written by a different model."""
    path = os.path.join(model_dir, SIGNATURE)
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


def restore_or_start(checkpoint: tf.train.Checkpoint, model, optimizer, model_dir: str, *,
                     resume: bool, chief: bool) -> int:
    """Restores the latest checkpoint of model_dir (exact step, optimizer state, iterator) or,
    for a fresh run, writes model_signature.json (chief); returns the step to start at.

    ValueError: checkpoints exist but resume=False; a checkpoint of another model / optimizer /
    input pipeline."""
    latest = tf.train.latest_checkpoint(model_dir)
    if latest and not resume:
        raise ValueError(f"{model_dir} already holds checkpoints ({latest}); pass resume=True to "
                         f"continue that run or use an empty model_dir")
    if latest:
        check_signature(model_dir, model, latest)
        try:
            checkpoint.restore(latest).assert_existing_objects_matched()
        except (AssertionError, ValueError, tf.errors.OpError) as err:
            raise ValueError(f"cannot resume from {latest}: it does not match this model, "
                             f"optimizer or input pipeline ({err})") from err
        log.info("resumed from %s at step %d", latest, int(optimizer.iterations.numpy()))
    elif chief:
        with open(os.path.join(model_dir, SIGNATURE), "w") as f:
            json.dump(model_signature(model), f)
    return int(optimizer.iterations.numpy())
