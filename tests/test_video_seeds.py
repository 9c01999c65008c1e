"""Per-video seeds (issue 14): a video's random choices (segment offsets, crop, flip) come from
(seed, video id, epoch), not from its position in the stream, so its clip in epoch e does not
depend on the shard layout, the shuffled order, the number of input pipelines or data-service
workers; another epoch gives another clip."""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

from tfvid.data import pipeline, schema  # noqa: E402
from tfvid.data.sampling import TSNSampler  # noqa: E402
from tfvid.data.source import video_seed  # noqa: E402

N, H, W, S = 24, 32, 40, 24


def example(v):
    rng = np.random.default_rng(v)
    frames = [tf.io.encode_jpeg(rng.integers(0, 256, (H, W, 3), dtype=np.uint8)).numpy()
              for _ in range(N)]
    return schema.make_example(f"v{v}", frames, height=H, width=W, frame_rate=25,
                               label_index=v % 3).SerializeToString()


def write(path, videos):
    with tf.io.TFRecordWriter(str(path)) as w:
        for v in videos:
            w.write(example(v))
    return str(path)


@pytest.fixture(scope="module")
def layouts(tmp_path_factory):
    """The same videos v0..v5 in two layouts: two shards in order, and one shard in reverse
    order holding v6 and v7 as well (other positions, another permutation per epoch)."""
    root = tmp_path_factory.mktemp("seeds")
    return {"a": [write(root / "a-0.tfrecord", [0, 1, 2]), write(root / "a-1.tfrecord", [3, 4, 5])],
            "b": [write(root / "b-0.tfrecord", [7, 5, 4, 3, 6, 2, 1, 0])]}


def clips_by_epoch(files, videos, epochs=2, input_context=None, batch_size=1, **kw):
    """{(epoch, id): clip} of a training run (one clip per batch: batch_size is the global
    one), and the ids in stream order."""
    ds = pipeline.build_dataset(files, sampler=TSNSampler(3, 1), mode="train",
                                batch_size=batch_size,
                                input_size=S, backbone="tiny", seed=9, kernels=False,
                                input_context=input_context, **kw)
    out, order = {}, []
    for i, b in enumerate(ds.take(epochs * videos)):
        key = (i // videos, b["id"].numpy()[0].decode())
        assert key not in out                                # every video once per epoch
        out[key] = b["clip"].numpy()[0]
        order.append(key[1])
    return out, order


def test_same_video_same_clip_in_the_same_epoch_wherever_it_sits(layouts):
    a, order_a = clips_by_epoch(layouts["a"], 6)
    b, order_b = clips_by_epoch(layouts["b"], 8)
    common = sorted(k for k in a if k in b)
    assert len(common) == 12                                 # v0..v5 in epochs 0 and 1
    positions = [(order_a.index(v), order_b.index(v)) for _, v in common[:6]]
    assert any(p != q for p, q in positions)                 # they sit elsewhere in the stream
    for key in common:
        np.testing.assert_array_equal(a[key], b[key], err_msg=str(key))
    for v in range(6):                                        # another epoch, another clip
        assert not np.array_equal(a[(0, f"v{v}")], a[(1, f"v{v}")]), v


def test_clip_does_not_depend_on_the_number_of_pipelines(layouts):
    one, _ = clips_by_epoch(layouts["a"], 6)
    for pipe in range(2):
        ctx = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=pipe,
                                         num_replicas_in_sync=2)
        part, _ = clips_by_epoch(layouts["a"], 3, input_context=ctx, batch_size=2)
        assert len(part) == 6
        for key, clip in part.items():
            np.testing.assert_array_equal(clip, one[key], err_msg=str(key))


def test_video_seed_is_a_function_of_seed_id_and_epoch():
    s = video_seed(3, tf.constant("v1"), 0).numpy()
    assert np.array_equal(s, video_seed(3, "v1", 0).numpy())
    others = [video_seed(4, "v1", 0), video_seed(3, "v2", 0), video_seed(3, "v1", 1)]
    assert all(not np.array_equal(s, o.numpy()) for o in others)


def test_data_service_gives_the_local_clips(layouts):
    """A dispatcher and two workers in this process: over one epoch the same multiset of ids
    as the local pipeline, and the same clip for each id (dynamic sharding)."""
    service = tf.data.experimental.service
    dispatcher = service.DispatchServer()
    address = dispatcher.target.split("://")[1]
    workers = [service.WorkerServer(service.WorkerConfig(dispatcher_address=address))
               for _ in range(2)]
    try:
        local, _ = clips_by_epoch(layouts["b"], 8, epochs=1)
        ds = pipeline.build_dataset(layouts["b"], sampler=TSNSampler(3, 1), mode="train",
                                    batch_size=1, input_size=S, backbone="tiny", seed=9,
                                    kernels=False, repeat=False, data_service=dispatcher.target)
        remote = {}
        for b in ds:
            vid = b["id"].numpy()[0].decode()
            assert vid not in remote
            remote[vid] = b["clip"].numpy()[0]
        assert sorted(remote) == sorted(v for _, v in local)
        for vid, clip in remote.items():
            np.testing.assert_array_equal(clip, local[(0, vid)], err_msg=vid)
    finally:
        for w in workers:
            w.stop()
        dispatcher.stop()


def test_data_service_refuses_gzip_shards(tmp_path):
    path = str(tmp_path / "a.tfrecord.gz")
    with tf.io.TFRecordWriter(path, "GZIP") as w:
        w.write(example(0))
    with pytest.raises(ValueError, match="GZIP"):
        pipeline.build_dataset(path, sampler=TSNSampler(3, 1), mode="train",
                               data_service="grpc://localhost:5050")
