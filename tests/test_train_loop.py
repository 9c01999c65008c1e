"""tfvid.train: the custom loop on a tiny model with in-memory data (default strategy)."""
import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfvid.train import loop, schedules
from tfvid.train.loop import train
from tfvid.train.schedules import MultiStepSchedule, PlateauController, make_schedule

D, CLASSES = 6, 3
RNG = np.random.default_rng(0)
X = RNG.normal(size=(96, D)).astype("float32")
W_TRUE = RNG.normal(size=(D, CLASSES)).astype("float32")
Y = np.argmax(X @ W_TRUE, axis=1).astype("int32")


def mlp(classes=CLASSES, hidden=8):
    inputs = keras.Input((D,))
    h = keras.layers.Dense(hidden, activation="tanh")(inputs)
    return keras.Model(inputs, keras.layers.Dense(classes)(h))


def data_fn(batch=16, n=96, dicts=True):
    def fn(ctx):
        per = ctx.get_per_replica_batch_size(batch)
        elems = {"clip": X[:n], "label": Y[:n], "id": tf.as_string(tf.range(n))} if dicts \
            else (X[:n], Y[:n])
        return tf.data.Dataset.from_tensor_slices(elems).repeat().batch(per, drop_remainder=True)
    return fn


def run(tmp_path, name="run", steps=30, **kw):
    kw.setdefault("learning_rate", 0.1)
    kw.setdefault("progress", False)
    return train(kw.pop("model_fn", mlp), kw.pop("dataset_fn", data_fn()),
                 model_dir=str(tmp_path / name), steps=steps, global_batch_size=16, **kw)


def test_loss_decreases_and_outputs(tmp_path):
    history = []
    model, metrics = run(tmp_path, steps=60, log_every=10, weight_decay=1e-4, clip_norm=40,
                         val_dataset_fn=lambda ctx: tf.data.Dataset.from_tensor_slices(
                             (X, Y)).batch(32),
                         step_callback=lambda step, logs: history.append(logs["loss"]))
    assert len(history) == 60
    assert np.mean(history[-10:]) < 0.6 * np.mean(history[:10])
    assert metrics["final_step"] == 60 and metrics["val_accuracy"] > 0.7
    d = tmp_path / "run"
    saved = json.loads((d / "metrics.json").read_text())
    for key in ("final_step", "loss", "train_accuracy", "val_accuracy", "steps_per_sec",
                "data_wait_fraction"):
        assert saved[key] is not None, key
    assert 0 <= saved["data_wait_fraction"] <= 1
    assert tf.train.latest_checkpoint(str(d)).endswith("ckpt-60")
    assert (d / "final.weights.h5").exists()
    assert any(f.startswith("events") for f in os.listdir(d / "train"))
    assert any(f.startswith("events") for f in os.listdir(d / "val"))


def _one_step(tmp_path, name, weight_decay, clip_norm, lr=0.5):
    """Weights before and after one training step on the first batch, and that batch."""
    initial = {}

    def model_fn():
        m = mlp()
        initial["w"] = [w.copy() for w in m.get_weights()]
        initial["m"] = mlp()  # a twin used to compute the reference gradient
        initial["m"].set_weights(initial["w"])
        return m

    model, _ = run(tmp_path, name, steps=1, model_fn=model_fn, learning_rate=lr, momentum=0.9,
                   weight_decay=weight_decay, clip_norm=clip_norm)
    twin = initial["m"]
    with tf.GradientTape() as tape:
        logits = twin(X[:16], training=True)
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(Y[:16], logits))
    grads = [g.numpy() for g in tape.gradient(loss, twin.trainable_variables)]
    return initial["w"], model.get_weights(), grads, [v.name for v in twin.trainable_variables]


def test_weight_decay_is_caffe_l2_on_kernels_only(tmp_path):
    wd, lr = 0.1, 0.5
    w0, w1, grads, names = _one_step(tmp_path, "wd", wd, None, lr)
    for before, after, g, name in zip(w0, w1, grads, names):
        decay = wd * before if name == "kernel" else 0.0  # biases are not decayed
        np.testing.assert_allclose(after, before - lr * (g + decay), rtol=1e-5, atol=1e-6)


def test_clip_by_global_norm_before_decay(tmp_path):
    wd, lr, clip = 0.1, 0.5, 0.05
    w0, w1, grads, names = _one_step(tmp_path, "clip", wd, clip, lr)
    norm = np.sqrt(sum(np.sum(g ** 2) for g in grads))
    assert norm > clip  # the clip binds
    for before, after, g, name in zip(w0, w1, grads, names):
        decay = wd * before if name == "kernel" else 0.0
        np.testing.assert_allclose(after, before - lr * (g * clip / norm + decay),
                                   rtol=1e-5, atol=1e-6)


def test_l2_penalty_value():
    m = mlp()
    kernels = [v.numpy() for v in m.trainable_variables if v.name == "kernel"]
    assert len(kernels) == 2 and len(loop.kernel_variables(m)) == 2
    expected = 0.5 * 5e-4 * sum(np.sum(k ** 2) for k in kernels)
    np.testing.assert_allclose(float(loop.l2_penalty(m, 5e-4)), expected, rtol=1e-6)


def test_multistep_schedule_values_and_serialisation():
    s = MultiStepSchedule(1e-3, [1500, 3000])
    values = [float(s(i)) for i in (0, 1499, 1500, 2999, 3000, 3499)]
    np.testing.assert_allclose(values, [1e-3, 1e-3, 1e-4, 1e-4, 1e-5, 1e-5], rtol=1e-6)
    again = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(s))
    assert isinstance(again, MultiStepSchedule) and again.boundaries == [1500, 3000]
    assert float(again(2000)) == pytest.approx(1e-4)
    flow = make_schedule("step", 0.005, [12000, 18000])
    assert float(flow(19999)) == pytest.approx(5e-5)
    with pytest.raises(ValueError, match="increasing"):
        MultiStepSchedule(1e-3, [3000, 1500])
    with pytest.raises(ValueError, match="unknown lr schedule"):
        make_schedule("cosine", 0.1)
    assert make_schedule("constant", 0.1) == 0.1


def test_plateau_controller():
    ctl = make_schedule("plateau", 0.01, patience=2)
    lr = tf.Variable(0.01)
    ctl.attach(lr)
    assert not ctl.update(0.5) and not ctl.update(0.6)   # improving
    assert not ctl.update(0.6)                           # 1 bad evaluation
    assert ctl.update(0.55)                              # 2 bad -> divide by 10
    assert float(lr.numpy()) == pytest.approx(0.001)
    assert not ctl.update(0.59) and ctl.update(0.58)
    assert float(lr.numpy()) == pytest.approx(1e-4)
    assert not ctl.update(0.7) and int(ctl.wait.numpy()) == 0


def test_plateau_drives_optimizer_lr(tmp_path):
    # A validation set with random labels stalls, so the lr must drop from 0.1.
    yr = np.random.default_rng(1).integers(0, CLASSES, 96).astype("int32")
    ctl = PlateauController(0.1, patience=1)
    _, metrics = run(tmp_path, steps=40, learning_rate=ctl, eval_every=5,
                     val_dataset_fn=lambda ctx: tf.data.Dataset.from_tensor_slices(
                         (X, yr)).batch(32))
    assert metrics["learning_rate"] <= 0.01 + 1e-9


def test_multi_view_validation_is_averaged(tmp_path):
    # (B, V, D) views of a (B, D) model: the view mean of logits decides.
    views = np.stack([X, -X, X], axis=1)
    model, metrics = run(tmp_path, steps=2, val_dataset_fn=lambda ctx: (
        tf.data.Dataset.from_tensor_slices({"clip": views, "label": Y}).batch(40)))
    logits = np.mean([model(views[:, v]).numpy() for v in range(3)], axis=0)
    assert metrics["val_accuracy"] == pytest.approx(np.mean(np.argmax(logits, 1) == Y))
    assert metrics["val_examples"] == 96


def test_empty_and_exhausted_datasets(tmp_path):
    empty = lambda ctx: tf.data.Dataset.from_tensor_slices((X[:0], Y[:0])).batch(16)
    with pytest.raises(ValueError, match="training dataset is empty"):
        run(tmp_path, "empty", steps=5, dataset_fn=empty)
    once = lambda ctx: tf.data.Dataset.from_tensor_slices((X[:32], Y[:32])).batch(16)
    with pytest.raises(ValueError, match="ran out at step 2"):
        run(tmp_path, "once", steps=5, dataset_fn=once)


def test_different_model_checkpoint_is_refused(tmp_path):
    run(tmp_path, "d", steps=3)
    with pytest.raises(ValueError, match="different model"):
        run(tmp_path, "d", steps=6, model_fn=lambda: mlp(classes=4))
    with pytest.raises(ValueError, match="already holds checkpoints"):
        run(tmp_path, "d", steps=6, resume=False)


def test_interrupted_run_resumes_to_the_same_weights(tmp_path):
    kw = dict(steps=6, checkpoint_every=3, learning_rate=make_schedule("step", 0.1, [4]),
              weight_decay=1e-3, clip_norm=1.0)
    reference, _ = run(tmp_path, "full", **kw)

    def crash(step, logs):
        if step == 4:
            raise KeyboardInterrupt("simulated crash at step 4")
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path, "cut", step_callback=crash, **kw)
    assert tf.train.latest_checkpoint(str(tmp_path / "cut")).endswith("ckpt-3")
    resumed, metrics = run(tmp_path, "cut", **kw)
    assert metrics["resumed_from_step"] == 3 and metrics["final_step"] == 6
    assert metrics["steps_this_run"] == 3
    for a, b in zip(reference.get_weights(), resumed.get_weights()):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-7)
    # already finished: nothing to do, same step
    _, again = run(tmp_path, "cut", **kw)
    assert again["final_step"] == 6 and again["steps_this_run"] == 0
    assert again["loss"] == metrics["loss"]  # the finished run's numbers are kept


@pytest.mark.parametrize("mode", ["skip", "restart"])
def test_data_resume_modes(tmp_path, mode):
    kw = dict(steps=6, checkpoint_every=3, data_resume=mode)
    reference, _ = run(tmp_path, "full", **kw)
    run(tmp_path, "cut", **{**kw, "steps": 3})
    resumed, _ = run(tmp_path, "cut", **kw)
    same = all(np.allclose(a, b, atol=1e-7) for a, b in
               zip(reference.get_weights(), resumed.get_weights()))
    assert same == (mode == "skip")


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="divisible"):
        train(mlp, data_fn(), model_dir=str(tmp_path / "a"), steps=1, global_batch_size=3,
              strategy=_FakeTwoReplicas())
    with pytest.raises(ValueError, match="plateau lr schedule needs"):
        run(tmp_path, "b", learning_rate=PlateauController(0.1))
    with pytest.raises(ValueError, match="data_resume"):
        run(tmp_path, "c", data_resume="later")


class _FakeTwoReplicas:
    num_replicas_in_sync = 2


def test_make_strategy_errors(monkeypatch):
    from tfvid.train.strategy import is_chief, make_strategy
    with pytest.raises(ValueError, match="unknown strategy 'tpu'"):
        make_strategy("tpu")
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ValueError, match="needs the TF_CONFIG"):
        make_strategy("multi_worker")
    monkeypatch.setenv("TF_CONFIG", "{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        make_strategy("multi_worker")
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": {"worker": ["a:1"]},
                                                "task": {"type": "worker", "index": 3}}))
    with pytest.raises(ValueError, match="index 3 is out of range"):
        make_strategy("multi_worker")
    with pytest.raises(ValueError, match="does not take a device list"):
        make_strategy("default", devices=["/cpu:0"])
    default = make_strategy("default")
    assert default.num_replicas_in_sync == 1 and is_chief(default)
    assert make_strategy("one_device").num_replicas_in_sync == 1
