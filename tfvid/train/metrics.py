"""Logging of tfvid.train.loop: the running window of step numbers, TensorBoard scalars and
the metrics.json summary of a run.

model_dir
    train/, val/     TensorBoard scalars (loss, accuracy, learning_rate, l2, steps_per_sec,
                     data_wait_fraction = iterator wait / step time), written with
                     tf.summary.write (no tensorboard package needed)
    metrics.json     the final numbers (`run_metrics`)
"""
from __future__ import annotations

import os

import tensorflow as tf
from tensorflow.core.framework import summary_pb2

# TensorBoard's scalar-plugin metadata, written with tf.summary.write so that logging does not
# need the tensorboard package (tf.summary.scalar imports it).
_SCALAR_METADATA = summary_pb2.SummaryMetadata(
    plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars"),
    data_class=summary_pb2.DATA_CLASS_SCALAR)
_KEYS = ("loss", "correct", "count", "wait", "time", "steps")


class Summaries:
    """TensorBoard writers model_dir/train and model_dir/val (no-op writers off the chief)."""

    def __init__(self, model_dir: str, chief: bool):
        if chief:
            self.writers = {kind: tf.summary.create_file_writer(os.path.join(model_dir, kind))
                            for kind in ("train", "val")}
        else:
            self.writers = {kind: tf.summary.create_noop_writer() for kind in ("train", "val")}

    def write(self, kind: str, step: int, values: dict) -> None:
        with self.writers[kind].as_default(step=step):
            for key, value in values.items():
                tf.summary.write(key, tf.constant(value, tf.float32), metadata=_SCALAR_METADATA)

    def flush(self) -> None:
        for w in self.writers.values():
            w.flush()


class StepWindow:
    """Sums of the steps since the last log line (`window`) and over this run (`run_*`).

    add() takes one step's summed loss / correct / count and its times: `wait` the seconds
    spent waiting for the input iterator, `time` the whole step (wait included)."""

    def __init__(self):
        self.window = dict.fromkeys(_KEYS, 0.0)
        self.run_time, self.run_wait, self.run_steps = 0.0, 0.0, 0

    def add(self, *, loss: float, correct: float, count: float, wait: float, time: float):
        for key, value in (("loss", loss * count), ("correct", correct), ("count", count),
                           ("wait", wait), ("time", time), ("steps", 1)):
            self.window[key] += value
        self.run_time += time
        self.run_wait += wait
        self.run_steps += 1

    def flush(self, **extra) -> dict:
        """The window's mean loss, accuracy, steps_per_sec and data_wait_fraction (+ extra),
        then a fresh window."""
        w = self.window
        values = {"loss": w["loss"] / max(w["count"], 1.0),
                  "accuracy": w["correct"] / max(w["count"], 1.0), **extra,
                  "steps_per_sec": w["steps"] / w["time"],
                  "data_wait_fraction": w["wait"] / w["time"]}
        self.window = dict.fromkeys(_KEYS, 0.0)
        return values

    def steps_per_sec(self) -> float | None:
        return self.run_steps / self.run_time if self.run_time else None

    def data_wait_fraction(self) -> float | None:
        return self.run_wait / self.run_time if self.run_time else None


def run_metrics(*, step: int, start: int, last: dict, learning_rate: float, window: StepWindow,
                replicas: int, global_batch_size: int, val: dict, bad_train, bad_val,
                run_info: dict | None) -> dict:
    """metrics.json of a run: the last logged window's loss / accuracy, the run's speed and
    data-wait fraction, validation numbers, the bad videos met and run_info."""
    return {"final_step": step, "loss": last.get("loss"), "train_accuracy": last.get("accuracy"),
            "learning_rate": learning_rate, "steps_per_sec": window.steps_per_sec(),
            "data_wait_fraction": window.data_wait_fraction(),
            "steps_this_run": window.run_steps, "resumed_from_step": start,
            "num_replicas": replicas, "global_batch_size": global_batch_size, **val,
            "bad_videos": sorted(bad_train.seen.values()), "num_bad_videos": len(bad_train.seen),
            "bad_val_videos": sorted(bad_val.seen.values()), **(run_info or {})}
