"""extract_features: per-frame features of a TSN run's backbone (or an ImageNet backbone file)
written as MediaSequence feature records; equal to running the backbone on the centre-cropped,
normalised frames; densities, flow stacks, crops, resume, rejects, option changes, the CLI."""
import json
import os

import numpy as np
import pytest

from tfvid.data import schema
from tfvid.prep.extract_features import extract_features
from tfvid.prep.frame_network import (Density, load_backbone_network, load_run_network,
                                      parse_density, window_indices)

S, WIDTH = 32, 0.25
CLASSES = ["a", "b"]


# ------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """4 synthetic videos (48x36, 14-20 frames) in 2 shards, with Farneback flow."""
    from tfvid.prep.indexes import VideoEntry
    from tfvid.prep.prepare import prepare, shard_paths
    from tfvid.prep.synthetic import make_synthetic_dataset
    root = tmp_path_factory.mktemp("extract_features")
    info = make_synthetic_dataset(str(root / "src"), num_classes=2, videos_per_class=2,
                                  groups=2, frame_size=(48, 36), num_frames=(14, 20))
    entries = [VideoEntry(os.path.splitext(os.path.basename(v["path"]))[0],
                          os.path.join(info["videos_dir"], v["path"]), v["label"],
                          v["class_name"], "train") for v in info["videos"]]
    out = str(root / "records")
    prepare(entries, info["class_names"], output_dir=out, split="train", num_shards=2,
            frame_size=(48, 36), flow="farneback", workers=1, progress=False)
    return {"root": root, "shards": shard_paths(out, "train"), "classes": info["class_names"]}


def write_run(root, modality, checkpoint=False):
    """A TSN run directory as the train job leaves it: run_config.json + final weights, or a
    tf.train checkpoint (ckpt-1 and its state file) with `checkpoint`."""
    from tfvid import models
    model = models.build("tsn", 2, backbone="tiny", width=WIDTH, input_size=S,
                         num_segments=None, modality=modality)
    for v in model.weights:              # non-trivial BN statistics: restore must load them
        if "moving_variance" in v.path:
            v.assign(np.random.default_rng(1).uniform(0.5, 2.0, v.shape).astype("float32"))
    folder = root / f"run_{modality}"
    folder.mkdir()
    cfg = {"model": "tsn", "num_classes": 2, "backbone": "tiny", "width": WIDTH,
           "input_size": S, "modality": modality, "num_segments": 3, "class_names": CLASSES}
    (folder / "run_config.json").write_text(json.dumps(cfg))
    if checkpoint:
        import tensorflow as tf
        tf.train.CheckpointManager(tf.train.Checkpoint(model=model), str(folder), 3).save()
    else:
        model.save_weights(str(folder / "final.weights.h5"))
    return str(folder), model.get_layer("tiny")


@pytest.fixture(scope="module")
def rgb_run(data):
    return write_run(data["root"], "rgb")


@pytest.fixture(scope="module")
def rgb_net(rgb_run):
    return load_run_network(rgb_run[0])


def records(path):
    import tensorflow as tf
    return [tf.train.SequenceExample.FromString(r.numpy()) for r in tf.data.TFRecordDataset(path)]


def by_id(folder, name):
    """{video id: parse_feature_example dict (numpy)} over every shard of `folder`."""
    import glob

    import tensorflow as tf
    out = {}
    for path in sorted(glob.glob(os.path.join(folder, "*.tfrecord*"))):
        for raw in tf.data.TFRecordDataset(path):
            parsed = {k: v.numpy() for k, v in schema.parse_feature_example(raw, name).items()}
            out[parsed["id"].decode()] = parsed
    return out


def inputs(shards):
    """{video id: (frames uint8 (n, H, W, 3), flow_x, flow_y (n-1, H, W), label)}."""
    import tensorflow as tf
    out = {}
    for path in shards:
        for ex in records(path):
            lists = ex.feature_lists.feature_list

            def dec(key, ch):
                return np.stack([tf.io.decode_jpeg(f.bytes_list.value[0], ch).numpy()
                                 for f in lists[key].feature])
            vid = ex.context.feature[schema.ID].bytes_list.value[0].decode()
            out[vid] = (dec(schema.FRAMES, 3), dec(schema.FLOW_X, 1)[..., 0],
                        dec(schema.FLOW_Y, 1)[..., 0],
                        ex.context.feature[schema.LABEL_INDEX].int64_list.value[0])
    return out


def reference(backbone_net, clip, modality):
    """The backbone on the centre-cropped, normalised (T, H, W, C) clip, directly."""
    from tfvid.data import augment
    x = augment.normalize(augment.center_crop(clip, S)[0], "tiny", modality)
    return backbone_net(x, training=False).numpy()


# ---------------------------------------------------------------------------- positions
def test_densities_and_windows():
    assert Density().positions(5).tolist() == [0, 1, 2, 3, 4]
    assert Density("num_frames", 3).positions(12).tolist() == [2, 6, 10]   # TSN test rule
    assert Density("num_frames", 4).positions(2).tolist() == [0, 0, 1, 1]
    assert Density("fps", 5).positions(11, 25.0).tolist() == [0, 5, 10]
    assert Density("fps", 50).positions(2, 25.0).tolist() == [0, 0, 1, 1]
    with pytest.raises(ValueError, match="frame rate"):
        Density("fps", 5).positions(10, 0.0)
    assert str(parse_density("all", 0, 8)) == "num_frames=8"
    assert str(parse_density("all", 2.5, 0)) == "fps=2.5" and parse_density().kind == "all"
    with pytest.raises(ValueError, match="not both"):
        parse_density("all", 2.0, 8)
    with pytest.raises(ValueError, match="only 'all'"):
        parse_density("some")
    # flow stacks of L=5 centred on the position, shifted inside the 9 flow frames at the ends
    w = window_indices([0, 1, 4, 8, 9], 5, 9)
    assert w.tolist() == [[0, 1, 2, 3, 4]] * 2 + [[2, 3, 4, 5, 6]] + [[4, 5, 6, 7, 8]] * 2
    assert window_indices([0, 1], 5, 2).tolist() == [[0, 1, 1, 1, 1]] * 2   # short: clamped
    assert window_indices([3], 1, 9).tolist() == [[3]]


# ------------------------------------------------------------------------------- records
def test_rgb_features_of_every_frame_match_the_backbone(data, rgb_run, rgb_net, tmp_path):
    folder, backbone = rgb_run
    assert rgb_net.feature_dim == backbone.output_shape[-1] and rgb_net.input_size == S
    out = str(tmp_path / "feat")
    summary = extract_features(data["shards"], out, rgb_net, progress=False, batch_size=7)
    videos = inputs(data["shards"])
    feats = by_id(out, "rgb")
    assert set(feats) == set(videos) and summary["videos"] == 4 and summary["rejects"] == 0
    assert summary["frames"] == sum(len(v[0]) for v in videos.values()) > 0
    assert summary["feature_dim"] == rgb_net.feature_dim and summary["frames_per_second"] > 0
    assert summary["shards_written"] == 2 and os.path.isfile(os.path.join(out, "classes.txt"))
    for vid, (frames, _, _, label) in videos.items():
        f = feats[vid]
        assert f["features"].shape == (len(frames), rgb_net.feature_dim)
        assert f["num_frames"] == len(frames) and f["label"] == label
        assert f["frame_index"].tolist() == list(range(len(frames)))
        np.testing.assert_allclose(f["features"], reference(backbone, frames, "rgb"),
                                   atol=1e-4, rtol=1e-4)
    ex = records(os.path.join(out, os.path.basename(data["shards"][0])))[0]
    ctx, lists = ex.context.feature, ex.feature_lists.feature_list
    assert schema.FRAMES not in lists and schema.FLOW_X not in lists    # features only
    assert ctx["FEATURE/rgb/source"].bytes_list.value[0].decode() == os.path.abspath(folder)
    assert ctx["FEATURE/rgb/density"].bytes_list.value[0] == b"all"
    assert ctx["FEATURE/rgb/crops"].int64_list.value[0] == 1
    assert ctx[schema.LABEL_STRING].bytes_list.value[0].decode() in data["classes"]
    # a rerun with the same options skips everything and reports the same totals
    again = extract_features(data["shards"], out, rgb_net, progress=False)
    assert again["shards_skipped"] == 2 and again["frames"] == summary["frames"]


def test_num_frames_crops_and_keep_frames(data, rgb_run, rgb_net, tmp_path):
    out = str(tmp_path / "feat")
    summary = extract_features(data["shards"], out, rgb_net, density=Density("num_frames", 5),
                               crops=3, keep_frames=True, feature_name="r", progress=False)
    assert summary["frames"] == 4 * 5
    videos = inputs(data["shards"])
    for path in data["shards"]:
        for ex in records(os.path.join(out, os.path.basename(path))):
            lists = ex.feature_lists.feature_list
            assert len(lists[schema.FRAMES].feature) > 0             # frames kept
            parsed = schema.parse_example(ex.SerializeToString(), feature_name="r")
            assert parsed["features"].shape == (5, rgb_net.feature_dim)
    f = by_id(out, "r")
    for vid, (frames, *_rest) in videos.items():
        idx = Density("num_frames", 5).positions(len(frames))
        assert f[vid]["frame_index"].tolist() == idx.tolist()
        from tfvid.data import augment
        views = augment.normalize(augment.three_crop(frames[idx], S), "tiny", "rgb")
        expected = np.mean([rgb_run[1](v, training=False).numpy() for v in views], 0)
        np.testing.assert_allclose(f[vid]["features"], expected, atol=1e-4, rtol=1e-4)


def test_flow_run_features(data, tmp_path):
    folder, backbone = write_run(tmp_path, "flow", checkpoint=True)
    net = load_run_network(folder)
    assert net.context["checkpoint"] == os.path.join(folder, "ckpt-1")
    assert (net.modality, net.new_length, net.channels) == ("flow", 5, 10)
    out = str(tmp_path / "feat")
    summary = extract_features(data["shards"][:1], out, net, density=Density("num_frames", 4),
                               progress=False)
    assert summary["feature_name"] == "flow" and summary["feature_dim"] == net.feature_dim
    videos = inputs(data["shards"][:1])
    feats = by_id(out, "flow")
    assert set(feats) == set(videos)
    from tfvid.data import modality as mod
    for vid, (frames, fx, fy, _) in videos.items():
        pos = Density("num_frames", 4).positions(len(frames))
        w = window_indices(pos, 5, len(fx))
        clip = mod.flow_stack(fx[w], fy[w]).numpy()
        assert feats[vid]["features"].shape == (4, net.feature_dim)
        np.testing.assert_allclose(feats[vid]["features"], reference(backbone, clip, "flow"),
                                   atol=1e-4, rtol=1e-4)


def test_backbone_weights_file(data, rgb_run, tmp_path):
    path = str(tmp_path / "tiny.weights.h5")
    rgb_run[1].save_weights(path)
    net = load_backbone_network("tiny", path, input_size=S, width=WIDTH)
    out = str(tmp_path / "feat")
    extract_features(data["shards"][:1], out, net, density=Density("fps", 5), progress=False)
    videos, feats = inputs(data["shards"][:1]), by_id(out, "rgb")
    for vid, (frames, *_rest) in videos.items():
        idx = Density("fps", 5).positions(len(frames), 25.0)
        np.testing.assert_allclose(feats[vid]["features"],
                                   reference(rgb_run[1], frames[idx], "rgb"), atol=1e-4)
    with pytest.raises(ValueError, match="needs weights"):
        load_backbone_network("tiny", None)


# ---------------------------------------------------------------------------- reliability
def test_resume_redoes_only_the_missing_shard(data, rgb_net, tmp_path):
    out = str(tmp_path / "feat")
    extract_features(data["shards"], out, rgb_net, density=Density("num_frames", 2),
                     progress=False)
    names = [os.path.basename(p) for p in data["shards"]]
    mtime = os.path.getmtime(os.path.join(out, names[0]))
    os.remove(os.path.join(out, names[1]))                     # "killed" before shard 2 ended
    log = os.path.join(out, "extract_features-progress.jsonl")
    kept = [line for line in open(log) if json.loads(line)["name"] != names[1]]
    open(log, "w").writelines(kept)
    summary = extract_features(data["shards"], out, rgb_net, density=Density("num_frames", 2),
                               progress=False)
    assert (summary["shards_written"], summary["shards_skipped"]) == (1, 1)
    assert summary["videos"] == 4 and summary["frames"] == 8 and summary["frames_computed"] < 8
    assert os.path.getmtime(os.path.join(out, names[0])) == mtime
    assert len(by_id(out, "rgb")) == 4
    # other options are refused, naming them
    with pytest.raises(ValueError,
                       match=r"crops: 1 -> 10, density: 'num_frames=2' -> 'num_frames=3'"):
        extract_features(data["shards"], out, rgb_net, density=Density("num_frames", 3),
                         crops=10, progress=False)
    with pytest.raises(ValueError, match="holds the input shards"):
        extract_features(data["shards"], os.path.dirname(data["shards"][0]), rgb_net)


def test_bad_records_are_rejected_and_corrupt_shards_reported(data, rgb_net, tmp_path):
    import tensorflow as tf
    exs = records(data["shards"][0])
    broken = tf.train.SequenceExample()
    broken.CopyFrom(exs[0])
    broken.context.feature[schema.ID].bytes_list.value[0] = b"broken"
    frames = broken.feature_lists.feature_list[schema.FRAMES].feature
    first = int(Density("num_frames", 2).positions(len(frames))[0])      # a sampled frame
    frames[first].bytes_list.value[0] = frames[first].bytes_list.value[0][:40]  # truncated
    bad = tmp_path / "bad"
    bad.mkdir()
    with tf.io.TFRecordWriter(str(bad / "a.tfrecord")) as w:
        w.write(exs[0].SerializeToString())
        w.write(b"not a protobuf \xff\xff\xff")
        w.write(broken.SerializeToString())
        w.write(exs[1].SerializeToString())
    full = open(data["shards"][1], "rb").read()
    (bad / "b.tfrecord").write_bytes(full[:len(full) // 2])    # truncated shard
    out = str(tmp_path / "feat")
    summary = extract_features([str(bad / "a.tfrecord"), str(bad / "b.tfrecord")], out,
                               rgb_net, density=Density("num_frames", 2), progress=False)
    assert summary["videos"] == 2 and summary["rejects"] == 3
    assert summary["shards_written"] == 1 and len(summary["shards_failed"]) == 1
    assert not os.path.exists(os.path.join(out, "b.tfrecord"))
    rows = [line.rstrip("\n").split("\t") for line in open(summary["files"]["rejects"])][1:]
    assert rows[0][1:3] == ["1", ""] and "does not parse" in rows[0][3]
    assert rows[1][1:3] == ["2", "broken"] and f"frame {first} is not a complete JPEG" in rows[1][3]
    assert rows[2][0].endswith("b.tfrecord") and "corrupt" in rows[2][3]


def test_flow_network_on_data_without_flow(rgb_run, tmp_path, data):
    import tensorflow as tf
    ex = records(data["shards"][0])[0]
    for key in (schema.FLOW_X, schema.FLOW_Y):
        del ex.feature_lists.feature_list[key]
    path = str(tmp_path / "noflow.tfrecord")
    with tf.io.TFRecordWriter(path) as w:
        w.write(ex.SerializeToString())
    folder, _ = write_run(tmp_path, "flow")
    with pytest.raises(ValueError, match="no optical flow"):
        extract_features([path], str(tmp_path / "out"), load_run_network(folder))


def test_gzip_shards_and_options_free_before_any_shard(data, rgb_net, tmp_path):
    """Nothing finished yet (the flow attempt above failed): other options are accepted.
    *.gz shards are read and written as GZIP TFRecords."""
    import tensorflow as tf
    path = str(tmp_path / "in" / "a.tfrecord.gz")
    os.makedirs(os.path.dirname(path))
    with tf.io.TFRecordWriter(path, "GZIP") as w:
        for ex in records(data["shards"][0]):
            w.write(ex.SerializeToString())
    out = str(tmp_path / "out")
    os.makedirs(out)
    with open(os.path.join(out, "extract_features-manifest.json"), "w") as f:
        json.dump({"version": 1, "options": {"crops": 10}}, f)
    summary = extract_features([path], out, rgb_net, density=Density("num_frames", 1),
                               progress=False)
    assert summary["videos"] == 2 and summary["frames"] == 2
    rows = list(tf.data.TFRecordDataset(os.path.join(out, "a.tfrecord.gz"), "GZIP"))
    parsed = schema.parse_feature_example(rows[0], "rgb")
    assert parsed["features"].shape == (1, rgb_net.feature_dim)
    assert int(parsed["label"]) in (0, 1)


# ----------------------------------------------------------------------------------- CLI
def test_job(data, rgb_run, tmp_path, capsys):
    from absl import flags

    from pipelines import extract_features as job
    FLAGS = flags.FLAGS
    out = str(tmp_path / "feat")
    try:
        FLAGS.unparse_flags()
        FLAGS(["x", f"--data={data['shards'][0]}", f"--output_dir={out}",
               f"--model_dir={rgb_run[0]}", "--num_frames=3", "--noprogress"])
        summary = job.main(["x"])
        assert summary["frames"] == 2 * 3 and summary["options"]["density"] == "num_frames=3"
        FLAGS.unparse_flags()
        FLAGS(["x", f"--data={data['shards'][0]}", f"--output_dir={out}",
               f"--model_dir={rgb_run[0]}", "--fps=2", "--num_frames=3"])
        with pytest.raises(ValueError, match="not both"):
            job.main(["x"])
        FLAGS.unparse_flags()
        FLAGS(["x", f"--data={data['shards'][0]}", f"--output_dir={out}",
               f"--model_dir={rgb_run[0]}", "--modality=flow"])
        with pytest.raises(ValueError, match="--modality: these follow the run"):
            job.main(["x"])
        FLAGS.unparse_flags()
        FLAGS(["x", f"--data={data['shards'][0]}", f"--output_dir={out}",
               f"--model_dir={rgb_run[0]}", "--num_frames=4", "--noprogress"])
        with pytest.raises(ValueError, match="other options"):
            job.main(["x"])
    finally:
        FLAGS.unparse_flags()
