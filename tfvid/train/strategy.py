"""Choose a tf.distribute strategy by name.

Call `make_strategy` FIRST, before any other TensorFlow op runs (before building a model, a
dataset, or even `tf.constant`): MultiWorkerMirroredStrategy configures collective ops in the
eager context, which TensorFlow refuses once the context is initialised, and splitting the CPU
into logical devices has the same constraint.

Names
    default       tf.distribute.get_strategy(): no distribution, one replica on the default device.
    one_device    OneDeviceStrategy on the first GPU, else the CPU.
    mirrored      MirroredStrategy over all local GPUs; without GPUs, over all logical CPU
                  devices when the CPU was split into several (as the tests do), else one CPU.
    multi_worker  MultiWorkerMirroredStrategy; the cluster comes from the TF_CONFIG environment
                  variable ({"cluster": {"worker": ["host:port", ...]}, "task": {"type":
                  "worker", "index": i}}), one process per worker, all started with the same
                  flags. Every worker must run the same number of steps.

Errors
    ValueError    unknown name; TF_CONFIG missing, not JSON, or without a cluster/task for
                  multi_worker; `devices` given for a strategy that does not take them.
    RuntimeError  the strategy was created after TensorFlow initialised (multi_worker).
"""
from __future__ import annotations

import json
import os
from typing import Sequence

import keras
import tensorflow as tf

STRATEGIES = ("default", "one_device", "mirrored", "multi_worker")


def _tf_config() -> dict:
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        raise ValueError(
            "strategy 'multi_worker' needs the TF_CONFIG environment variable, e.g. "
            '{"cluster": {"worker": ["host1:2222", "host2:2222"]}, '
            '"task": {"type": "worker", "index": 0}}')
    try:
        config = json.loads(raw)
    except json.JSONDecodeError as err:
        raise ValueError(f"TF_CONFIG is not valid JSON ({err}): {raw!r}") from None
    cluster, task = config.get("cluster"), config.get("task")
    if not isinstance(cluster, dict) or not cluster or not isinstance(task, dict):
        raise ValueError(f"TF_CONFIG needs a non-empty 'cluster' and a 'task': {raw!r}")
    if task.get("type") not in cluster:
        raise ValueError(f"TF_CONFIG task type {task.get('type')!r} is not in the cluster "
                         f"{sorted(cluster)}")
    if not 0 <= int(task.get("index", 0)) < len(cluster[task["type"]]):
        raise ValueError(f"TF_CONFIG task index {task.get('index')} is out of range for "
                         f"{len(cluster[task['type']])} {task['type']} address(es)")
    return config


def make_strategy(name: str = "default",
                  devices: Sequence[str] | None = None) -> tf.distribute.Strategy:
    """Returns the tf.distribute.Strategy called `name` (see the module docstring).

    `devices` optionally lists the devices of a `mirrored` strategy (e.g. ["/cpu:0", "/cpu:1"])
    or the single device of `one_device`.
    """
    if name not in STRATEGIES:
        raise ValueError(f"unknown strategy {name!r}; expected one of {', '.join(STRATEGIES)}")
    if devices is not None and name not in ("mirrored", "one_device"):
        raise ValueError(f"strategy {name!r} does not take a device list")
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "one_device":
        if devices is not None:
            if len(devices) != 1:
                raise ValueError(f"one_device takes exactly one device, got {list(devices)}")
            return tf.distribute.OneDeviceStrategy(devices[0])
        gpus = tf.config.list_logical_devices("GPU")
        return tf.distribute.OneDeviceStrategy(gpus[0].name if gpus else "/cpu:0")
    if name == "mirrored":
        if devices is None and not tf.config.list_logical_devices("GPU"):
            cpus = tf.config.list_logical_devices("CPU")
            devices = [d.name for d in cpus] if len(cpus) > 1 else None
        return tf.distribute.MirroredStrategy(devices=devices)
    _tf_config()  # validate before TensorFlow tries (its own errors are obscure)
    try:
        return tf.distribute.MultiWorkerMirroredStrategy()
    except (RuntimeError, ValueError) as err:
        raise RuntimeError(
            "could not create MultiWorkerMirroredStrategy; it must be created before any other "
            f"TensorFlow op runs (call make_strategy first): {err}") from err


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """True for the worker that writes summaries, metrics and the real checkpoints.

    Single-process strategies are always chief; under multi-worker the chief is task 'chief',
    or worker 0 when the cluster has no 'chief' task.
    """
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    if resolver.task_type == "chief":
        return True
    cluster = resolver.cluster_spec().as_dict()
    return resolver.task_type == "worker" and resolver.task_id == 0 and "chief" not in cluster


def worker_id(strategy: tf.distribute.Strategy) -> str:
    """A name unique to this process within the cluster ('worker_1'); 'chief' for single process."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return "chief"
    return f"{resolver.task_type}_{resolver.task_id}"


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
