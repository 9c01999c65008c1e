"""tfvid.train under MirroredStrategy (2 logical CPUs) and MultiWorkerMirroredStrategy (2 processes).

Logical devices and collective ops must be configured before TensorFlow initialises, so each
case runs in fresh Python processes started from a script written to tmp_path.
"""
import json
import os
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

COMMON = textwrap.dedent('''
    import json, os, sys
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import numpy as np
    import tensorflow as tf

    def split_cpu():
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()])

    def model_fn():
        import keras
        inputs = keras.Input((6,))
        h = keras.layers.Dense(8, activation="tanh")(inputs)   # BN-free: replicas stay exact
        return keras.Model(inputs, keras.layers.Dense(3)(h))

    rng = np.random.default_rng(0)
    X = rng.normal(size=(64, 6)).astype("float32")
    Y = np.argmax(X @ rng.normal(size=(6, 3)), axis=1).astype("int32")

    def dataset_fn(ctx):
        # Pipeline i reads examples i, i+P, ...; replicas of one pipeline take consecutive
        # per-replica batches, so every step's global batch is the same 16 examples whatever
        # the number of replicas.
        per = ctx.get_per_replica_batch_size(16)
        ds = tf.data.Dataset.from_tensor_slices({"clip": X, "label": Y})
        return ds.shard(ctx.num_input_pipelines, ctx.input_pipeline_id).repeat().batch(
            per, drop_remainder=True)

    def val_fn(ctx):
        ds = tf.data.Dataset.from_tensor_slices((X, Y))
        return ds.shard(ctx.num_input_pipelines, ctx.input_pipeline_id).batch(8)

    KW = dict(global_batch_size=16, learning_rate=0.2, momentum=0.9, weight_decay=1e-3,
              clip_norm=0.5, log_every=2, checkpoint_every=3, progress=False, seed=3)
''')

MIRRORED = COMMON + textwrap.dedent('''
    split_cpu()
    from tfvid.train.loop import train
    from tfvid.train.strategy import make_strategy
    out = sys.argv[1]
    mirrored = make_strategy("mirrored")
    assert mirrored.num_replicas_in_sync == 2, mirrored.num_replicas_in_sync
    single, m1 = train(model_fn, dataset_fn, model_dir=out + "/single", steps=5,
                       strategy=make_strategy("default"), **KW)
    multi, m2 = train(model_fn, dataset_fn, model_dir=out + "/mirrored", steps=5,
                      strategy=mirrored, val_dataset_fn=val_fn, eval_every=5, **KW)
    # interrupted + resumed mirrored run (iterator not checkpointable: data skip)
    train(model_fn, dataset_fn, model_dir=out + "/resumed", steps=3, strategy=mirrored, **KW)
    resumed, m3 = train(model_fn, dataset_fn, model_dir=out + "/resumed", steps=5,
                        strategy=mirrored, **KW)
    np.savez(out + "/weights.npz", *[w for m in (single, multi, resumed) for w in m.get_weights()])
    json.dump({"n": len(single.get_weights()), "single": m1, "mirrored": m2, "resumed": m3},
              open(out + "/result.json", "w"))
''')

WORKER = COMMON + textwrap.dedent('''
    from tfvid.train.strategy import make_strategy, is_chief
    strategy = make_strategy("multi_worker")   # first TF op of the process
    from tfvid.train.loop import train
    out, index = sys.argv[1], int(sys.argv[2])
    model, metrics = train(model_fn, dataset_fn, model_dir=out + "/run", steps=6,
                           strategy=strategy, val_dataset_fn=val_fn, eval_every=3, **KW)
    np.savez(f"{out}/worker{index}.npz", *model.get_weights())
    json.dump({"chief": is_chief(strategy), **metrics}, open(f"{out}/worker{index}.json", "w"))
''')


def _env(extra=None):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
               TF_CPP_MIN_LOG_LEVEL="2", TF_ENABLE_ONEDNN_OPTS="0", CUDA_VISIBLE_DEVICES="")
    env.pop("TF_CONFIG", None)
    env.update(extra or {})
    return env


def _free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def test_mirrored_two_cpus_matches_single_device(tmp_path):
    script = tmp_path / "mirrored.py"
    script.write_text(MIRRORED)
    proc = subprocess.run([sys.executable, str(script), str(tmp_path)], env=_env(),
                          capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-4000:]
    result = json.loads((tmp_path / "result.json").read_text())
    n = result["n"]
    arrays = np.load(tmp_path / "weights.npz")
    weights = [arrays[f"arr_{i}"] for i in range(3 * n)]
    single, multi, resumed = weights[:n], weights[n:2 * n], weights[2 * n:]
    assert result["mirrored"]["num_replicas"] == 2 and result["single"]["num_replicas"] == 1
    for a, b in zip(single, multi):
        assert not np.allclose(a, 0)
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-5)
    assert result["single"]["loss"] == pytest.approx(result["mirrored"]["loss"], abs=1e-5)
    assert result["mirrored"]["val_examples"] == 64
    assert result["resumed"]["resumed_from_step"] == 3
    for a, b in zip(multi, resumed):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-5)


def test_multi_worker_two_processes(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    procs = []
    for index in range(2):
        tf_config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
        procs.append(subprocess.Popen(
            [sys.executable, str(script), str(tmp_path), str(index)],
            env=_env({"TF_CONFIG": tf_config}), stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True))
    try:
        outputs = [p.communicate(timeout=180) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for p, (_, err) in zip(procs, outputs):
        assert p.returncode == 0, err[-4000:]
    w0, w1 = (np.load(tmp_path / f"worker{i}.npz") for i in range(2))
    assert len(w0.files) == len(w1.files) == 4
    for key in w0.files:
        np.testing.assert_array_equal(w0[key], w1[key])
    info = [json.loads((tmp_path / f"worker{i}.json").read_text()) for i in range(2)]
    assert [i["chief"] for i in info] == [True, False]
    assert all(i["final_step"] == 6 and i["num_replicas"] == 2 for i in info)
    assert info[0]["val_examples"] == 64
    run = tmp_path / "run"
    assert (run / "metrics.json").exists() and (run / "final.weights.h5").exists()
    assert 'model_checkpoint_path: "ckpt-6"' in (run / "checkpoint").read_text()
    assert not [d for d in os.listdir(run) if d.startswith(".tmp_")]  # worker 1's temp removed


BATCHNORM = COMMON + textwrap.dedent('''
    split_cpu()
    import keras
    from tfvid.train import loop
    from tfvid.train.loop import train
    from tfvid.train.strategy import make_strategy
    out, sync = sys.argv[1], sys.argv[2] == "sync"
    if not sync:                                  # the behaviour before the fix, for the report
        loop.synchronize_batchnorm = lambda model: 0

    def bn_model():
        inputs = keras.Input((6,))
        h = keras.layers.Dense(8)(inputs)
        h = keras.layers.BatchNormalization(momentum=0.5)(h)
        return keras.Model(inputs, keras.layers.Dense(3)(keras.layers.Activation("tanh")(h)))

    def bn_layer(m):
        return next(l for l in m.layers if isinstance(l, keras.layers.BatchNormalization))

    def replica_stats(strategy, m):
        layer = bn_layer(m)
        return [[np.asarray(t) for t in strategy.experimental_local_results(v.value)]
                for v in (layer.moving_mean, layer.moving_variance)]

    kw = dict(KW, clip_norm=None, weight_decay=0)
    mirrored = make_strategy("mirrored")
    multi, _ = train(bn_model, dataset_fn, model_dir=out + "/mirrored", steps=6,
                     strategy=mirrored, **kw)
    single, _ = train(bn_model, dataset_fn, model_dir=out + "/single", steps=6,
                      strategy=make_strategy("default"), **kw)
    (means, variances) = replica_stats(mirrored, multi)
    layer = bn_layer(single)
    np.savez(out + "/bn.npz", mean0=means[0], mean1=means[1], var0=variances[0],
             var1=variances[1], single_mean=np.asarray(layer.moving_mean),
             single_var=np.asarray(layer.moving_variance),
             synced=np.array([bool(bn_layer(multi).synchronized)]))
''')


def test_mirrored_batchnorm_statistics_are_synchronized(tmp_path):
    """Two replicas keep the same moving statistics, those of the global batch: equal to a
    single-replica run on the same global batches."""
    script = tmp_path / "bn.py"
    script.write_text(BATCHNORM)
    proc = subprocess.run([sys.executable, str(script), str(tmp_path), "sync"], env=_env(),
                          capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-4000:]
    bn = np.load(tmp_path / "bn.npz")
    assert bn["synced"][0]
    assert not np.allclose(bn["mean0"], 0)                    # the statistics moved
    np.testing.assert_allclose(bn["mean0"], bn["mean1"], rtol=0, atol=1e-6)
    np.testing.assert_allclose(bn["var0"], bn["var1"], rtol=0, atol=1e-6)
    np.testing.assert_allclose(bn["mean0"], bn["single_mean"], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(bn["var0"], bn["single_var"], rtol=1e-4, atol=1e-5)
