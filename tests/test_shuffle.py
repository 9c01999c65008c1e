"""Training order mixes the whole dataset every epoch (issue "Trust the default path", item 1).

A user's prepare_data output is often sorted by class (one class after another in each shard);
the training stream must still give batches with about as many distinct classes as a random
draw, in both storage layouts, and a different order every epoch.
"""
import math
import os

import numpy as np
import pytest
import tensorflow as tf

from tfvid.data import pipeline, schema
from tfvid.data.sampling import TSNSampler

CLASSES, PER_CLASS, SHARDS, FRAMES, BATCH = 40, 40, 8, 4, 64


def _jpeg(value):
    return tf.io.encode_jpeg(np.full((16, 16, 3), value, np.uint8)).numpy()


def write_class_sorted(root, layout):
    """40 classes x 40 videos of 4 16x16 frames, sorted by class: 8 TFRecord shards (5 classes
    each) or one .list file over raw frames. Returns the files for build_dataset."""
    videos = [(c, k) for c in range(CLASSES) for k in range(PER_CLASS)]
    frames = [_jpeg(10 * t) for t in range(FRAMES)]
    if layout == "tfrecord":
        per = len(videos) // SHARDS
        paths = []
        for s in range(SHARDS):
            path = os.path.join(root, f"train-{s:05d}-of-{SHARDS:05d}.tfrecord")
            with tf.io.TFRecordWriter(path) as w:
                for c, k in videos[s * per:(s + 1) * per]:
                    w.write(schema.make_example(f"c{c}/v{k}", frames, height=16, width=16,
                                                frame_rate=25, label_index=c)
                            .SerializeToString())
            paths.append(path)
        return paths
    lines = []
    for c, k in videos:
        folder = os.path.join(root, "frames", "train", f"c{c}", f"v{k}")
        os.makedirs(folder)
        for t, data in enumerate(frames, 1):
            with open(os.path.join(folder, f"img_{t:05d}.jpg"), "wb") as f:
                f.write(data)
        lines.append(f"frames/train/c{c}/v{k} {FRAMES} {c}\n")
    path = os.path.join(root, "train.list")
    with open(path, "w") as f:
        f.writelines(lines)
    return [path]


def expected_distinct(n=CLASSES * PER_CLASS, per_class=PER_CLASS, classes=CLASSES, b=BATCH):
    """E[distinct classes] of b videos drawn uniformly without replacement."""
    p_absent = math.comb(n - per_class, b) / math.comb(n, b)
    return classes * (1 - p_absent)


@pytest.mark.parametrize("layout", ["tfrecord", "list"])
def test_class_sorted_data_gives_mixed_batches(tmp_path, layout):
    files = write_class_sorted(str(tmp_path), layout)
    ds = pipeline.build_dataset(files, sampler=TSNSampler(2, 1), mode="train", batch_size=BATCH,
                                input_size=16, backbone="tiny", seed=5, kernels=False)
    epoch = CLASSES * PER_CLASS // BATCH                       # 25 batches
    batches = [(b["label"].numpy(), b["id"].numpy()) for b in ds.take(2 * epoch)]
    distinct = np.mean([len(set(labels)) for labels, _ in batches])
    assert distinct >= 0.85 * expected_distinct(), (distinct, expected_distinct())
    first = np.concatenate([ids for _, ids in batches[:epoch]])
    second = np.concatenate([ids for _, ids in batches[epoch:]])
    assert len(set(first)) == len(first) == CLASSES * PER_CLASS   # every video once per epoch
    assert set(first) == set(second) and not np.array_equal(first, second)
