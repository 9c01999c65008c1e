"""Shared test settings: quiet TensorFlow logs, small thread pools on the 2-core machine."""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest


@pytest.fixture(scope="session")
def tiny_records(tmp_path_factory):
    """TFRecord shard paths of 4 tiny synthetic videos (2 classes, 48x36, 14-20 frames), written
    by tfvid.prep.synthetic and tfvid.prep.prepare: data for the job-level tests."""
    from tfvid.prep.indexes import VideoEntry
    from tfvid.prep.prepare import prepare, shard_paths
    from tfvid.prep.synthetic import make_synthetic_dataset

    root = tmp_path_factory.mktemp("tiny_records")
    info = make_synthetic_dataset(str(root / "src"), num_classes=2, videos_per_class=2, groups=2,
                                  frame_size=(48, 36), num_frames=(14, 20))
    entries = [VideoEntry(os.path.splitext(os.path.basename(v["path"]))[0],
                          os.path.join(info["videos_dir"], v["path"]), v["label"],
                          v["class_name"], "train") for v in info["videos"]]
    out = str(root / "records")
    prepare(entries, info["class_names"], output_dir=out, split="train", num_shards=1,
            frame_size=(48, 36), workers=1, progress=False)
    return shard_paths(out, "train")
