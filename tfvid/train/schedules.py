"""Learning-rate schedules of the Caffe solvers used by the papers.

- `MultiStepSchedule`: Caffe's "multistep" policy, lr = base_lr * gamma ** (number of step values
  <= iteration), iteration 0-based (Caffe's `iter_`, Keras' `optimizer.iterations`). TSN UCF101:
  RGB 0.001 with steps [1500, 3000] over 3500 iterations, flow 0.005 with [12000, 18000] over
  20000 (docs/tsn.md). A serialisable keras LearningRateSchedule.
- `PlateauController`: divide by 10 when the validation metric has not improved for `patience`
  evaluations (DIN trains this way, docs/din.md). It drives a variable learning rate
  (the Keras optimizer's own `learning_rate` variable) and keeps its state in variables, so a
  tf.train.Checkpoint that tracks it resumes it.
"""
from __future__ import annotations

from typing import Sequence

import keras
import tensorflow as tf

SCHEDULES = ("constant", "step", "plateau")


@keras.saving.register_keras_serializable(package="tfvid")
class MultiStepSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """lr(step) = initial_learning_rate * factor ** #{b in boundaries : b <= step}.

    Example: MultiStepSchedule(1e-3, [1500, 3000]) gives 1e-3 for steps 0..1499, 1e-4 for
    1500..2999 and 1e-5 from 3000 on.
    """

    def __init__(self, initial_learning_rate: float, boundaries: Sequence[int] = (),
                 factor: float = 0.1, name: str | None = None):
        boundaries = [int(b) for b in boundaries]
        if any(b <= 0 for b in boundaries) or boundaries != sorted(set(boundaries)):
            raise ValueError(f"lr step boundaries must be positive and increasing, got {boundaries}")
        if initial_learning_rate <= 0:
            raise ValueError(f"learning rate must be positive, got {initial_learning_rate}")
        self.initial_learning_rate = float(initial_learning_rate)
        self.boundaries = boundaries
        self.factor = float(factor)
        self.name = name

    def __call__(self, step):
        step = tf.cast(step, tf.int64)
        if not self.boundaries:
            return tf.constant(self.initial_learning_rate, tf.float32)
        passed = tf.reduce_sum(tf.cast(
            step >= tf.constant(self.boundaries, tf.int64), tf.float32))
        return tf.cast(self.initial_learning_rate * tf.pow(
            tf.constant(self.factor, tf.float64), tf.cast(passed, tf.float64)), tf.float32)

    def get_config(self):
        return {"initial_learning_rate": self.initial_learning_rate,
                "boundaries": list(self.boundaries), "factor": self.factor, "name": self.name}


class PlateauController(tf.Module):
    """Divides a variable learning rate by 1/factor when a metric stops improving.

    After `attach(variable)` (e.g. `optimizer.learning_rate`), call `update(metric)` after each
    evaluation: when `patience` evaluations in a row fail to beat the best value by more than
    `min_delta` (higher is better for mode 'max', e.g. accuracy; lower for 'min', e.g. loss),
    the variable is multiplied by `factor` (0.1) but not below `min_lr`, and the count restarts.
    """

    def __init__(self, learning_rate: float, patience: int = 2, factor: float = 0.1,
                 mode: str = "max", min_delta: float = 0.0, min_lr: float = 0.0,
                 name: str = "plateau"):
        super().__init__(name=name)
        if mode not in ("max", "min"):
            raise ValueError(f"plateau mode must be 'max' or 'min', got {mode!r}")
        if patience < 1:
            raise ValueError(f"plateau patience must be >= 1, got {patience}")
        if not 0.0 < factor < 1.0:
            raise ValueError(f"plateau factor must be in (0, 1), got {factor}")
        self.initial_learning_rate = float(learning_rate)
        self.patience, self.factor, self.mode = int(patience), float(factor), mode
        self.min_delta, self.min_lr = float(min_delta), float(min_lr)
        worst = float("-inf") if mode == "max" else float("inf")
        self.best = tf.Variable(worst, trainable=False, dtype=tf.float32, name="best")
        self.wait = tf.Variable(0, trainable=False, dtype=tf.int64, name="wait")
        self._lr = None

    def attach(self, variable) -> None:
        """Binds the learning-rate variable this controller assigns (keeps its current value)."""
        self._lr = variable

    @property
    def learning_rate(self) -> float:
        if self._lr is None:
            return self.initial_learning_rate
        return float(tf.convert_to_tensor(self._lr).numpy())

    def update(self, metric: float) -> bool:
        """Records one evaluation; returns True when the learning rate was reduced."""
        if self._lr is None:
            raise RuntimeError("PlateauController.update before attach(learning_rate_variable)")
        metric = float(metric)
        best = float(self.best.numpy())
        better = (metric > best + self.min_delta if self.mode == "max"
                  else metric < best - self.min_delta)
        if better:
            self.best.assign(metric)
            self.wait.assign(0)
            return False
        self.wait.assign_add(1)
        if int(self.wait.numpy()) < self.patience:
            return False
        self.wait.assign(0)
        new_lr = max(self.learning_rate * self.factor, self.min_lr)
        reduced = new_lr < self.learning_rate
        self._lr.assign(new_lr)
        return reduced


def make_schedule(kind: str, lr: float, steps: Sequence[int] = (), *, factor: float = 0.1,
                  patience: int = 2):
    """Learning rate for `train(learning_rate=...)`.

    kind 'constant' -> the float `lr`; 'step' -> MultiStepSchedule(lr, steps, factor);
    'plateau' -> PlateauController(lr, patience, factor) (steps must be empty).
    """
    if kind not in SCHEDULES:
        raise ValueError(f"unknown lr schedule {kind!r}; expected one of {', '.join(SCHEDULES)}")
    if lr <= 0:
        raise ValueError(f"learning rate must be positive, got {lr}")
    if kind == "constant":
        if steps:
            raise ValueError("a 'constant' lr schedule takes no steps")
        return float(lr)
    if kind == "step":
        return MultiStepSchedule(lr, steps, factor)
    if steps:
        raise ValueError("a 'plateau' lr schedule takes no steps (it reacts to validation)")
    return PlateauController(lr, patience=patience, factor=factor)
