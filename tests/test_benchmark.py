"""pipelines.benchmark (input-pipeline): loaders' correctness, the summary arithmetic, flag
errors and a tiny end-to-end run of the job (2 short videos, a few batches)."""
import json

import numpy as np
import pytest
from absl import app, flags

from pipelines import bench_input, benchmark as job

FLAGS = flags.FLAGS


def call(*args):
    FLAGS.unparse_flags()
    FLAGS(["benchmark", *args])
    return job.main(["benchmark"])


@pytest.fixture(autouse=True)
def _reset_flags():
    yield
    FLAGS.unparse_flags()


def _augment(size=32, backbone="bninception"):
    from tfvid.data import augment
    pairs = augment.crop_size_pairs(48, 40, augment.RGB_SCALES, size)
    origins = {p: augment.fixed_crop_origins(48, 40, *p) for p in pairs}
    return bench_input.TSNAugment(pairs=pairs, origins=origins, input_size=size,
                                  norm=augment.normalization_config(backbone, "rgb"))


@pytest.mark.parametrize("backbone", ["bninception", "resnext50"])
def test_python_augment_normalises_like_tfvid(backbone):
    """A constant-colour clip is invariant to crop/resize/flip: only normalisation remains,
    and it must equal tfvid's augment.normalize (which takes RGB; the loaders give BGR)."""
    from tfvid.data import augment
    rgb = np.array([200, 100, 30], np.uint8)
    frames = [np.broadcast_to(rgb[::-1], (40, 48, 3)).copy() for _ in range(3)]
    out = _augment(32, backbone)(frames, np.random.default_rng(0))
    assert out.shape == (3, 3, 32, 32) and out.dtype == np.float32
    want = augment.normalize(np.broadcast_to(rgb, (1, 1, 1, 3)).astype(np.float32),
                             backbone).numpy().reshape(3)
    np.testing.assert_allclose(out[:, :, 5, 7], np.tile(want, (3, 1)), rtol=1e-5, atol=1e-5)


def test_tsn_train_indices_one_per_segment():
    rng = np.random.default_rng(0)
    for n in (3, 10, 250):
        idx = bench_input.tsn_train_indices(n, 3, rng)
        assert len(idx) == 3 and idx.min() >= 0 and idx.max() < n
        d = n // 3
        assert all(k * d <= i < (k + 1) * d for k, i in enumerate(idx))
    assert list(bench_input.tsn_train_indices(2, 3, rng)) == [0, 0, 0]


def test_pyav_loader_decodes_the_sampled_frames(tmp_path):
    """Seeking to keyframes (every 8 frames here) and decoding on gives the same frames as
    decoding the whole video."""
    from tfvid.prep.video import read_video, write_video
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (1, 24, 32, 3), dtype=np.uint8)
    frames = np.clip(base.astype(int) + 7 * np.arange(30)[:, None, None, None], 0, 255)
    path = write_video(tmp_path / "v.mp4", frames.astype(np.uint8), options={"g": "8"})
    full = read_video(path, frame_size=None).frames
    ds = bench_input.PyAVClipDataset([path], [30], 3, _augment())
    for indices in ([2, 9, 27], [27, 3, 16], [0, 1, 29], [5, 5, 20]):
        got = ds.load(path, np.array(indices))
        for i, f in zip(indices, got):
            np.testing.assert_array_equal(f[..., ::-1], full[i])   # BGR out
    assert ds.times["decode"] > 0 and ds.times["convert"] > 0


def test_summarize_ratios_shares_and_targets():
    rates = {"tfrecord": 100, "tfrecord.bound": 120, "tfrecord.parse": 200, "tfrecord.read": 400,
             "frames": 300, "frames.stock": 175, "frames.bound": 350, "frames.read": 3000,
             "python.frames": 150, "python.pyav": 10}
    runs = {v: [{"clips_per_s": r / 2}, {"clips_per_s": r}] for v, r in rates.items()}
    for v in ("python.frames", "python.pyav"):
        for r in runs[v]:
            r["stages"] = {"decode": 0.003, "augment": 0.001}
    for r in runs.values():
        for x in r:
            x.update(clips=64, cpu_s=0.64)
    data = {"videos": [("a.mp4", 150), ("b.mp4", 300)], "frames": 450, "dir": "x",
            "bytes": {"tfrecord": 10_000_000, "mp4": 1, "jpeg_files": 1}}
    cfg = {"num_segments": 3, "batch_size": 32, "input_size": 224, "repeats": 2}
    res = job.summarize(runs, data, cfg)
    assert res["fastest_layout"] == "frames"
    assert res["pipeline_clips_per_s"] == 300 and res["bound_clips_per_s"] == 350
    assert res["tfrecord_clips_per_s"] == 100 and res["python_pyav_clips_per_s"] == 10
    t = res["targets"]
    assert t["fastest layout / (b)"]["ratio"] == pytest.approx(2.0)
    assert t["fastest layout / (b)"]["met"] and t["fastest layout / its bound"]["met"]
    assert t["TFRecord / (c)"]["ratio"] == pytest.approx(10.0)
    assert t["fastest layout / its bound"]["ratio"] == pytest.approx(300 / 350)
    # TFRecord: 1/400 read, 1/200 - 1/400 parse, 1/120 - 1/200 decode, 1/100 - 1/120 augment
    sh = res["shares"]["tfrecord"]
    assert sh["read"] == pytest.approx(0.25) and sh["parse"] == pytest.approx(0.25)
    assert sum(sh.values()) == pytest.approx(1.0)
    assert res["shares"]["python.pyav"] == pytest.approx({"decode": 0.75, "augment": 0.25})
    assert res["data"]["mean_record_mb"] == pytest.approx(5.0)
    assert res["cpu_ms_per_clip"]["frames"] == pytest.approx(10.0)
    text = job.format_table(res)
    assert "fastest layout / (b) >= 1.5: 2.00 (met); by CPU cost per clip: 1.00 (NOT met)" in text
    stock = [line for line in text.splitlines() if "stock TF ops" in line][0]
    assert stock.split()[-5:-2] == ["175.0", "0.50", "1.17"]    # clips/s, / bound, / (b)
    assert job.format_table(res, markdown=True).splitlines()[1].startswith("|---|")


@pytest.mark.parametrize("args,pattern", [
    (("--variants=tfrecord,nope",), "--variants: unknown"),
    (("--video_frames=300,150",), "--video_frames needs"),
    (("--video_size=big",), "--video_size"),
    (("--timed_batches=0",), "--timed_batches must be >= 1"),
])
def test_flag_errors(tmp_path, args, pattern):
    with pytest.raises(app.UsageError, match=pattern):
        call(f"--bench_dir={tmp_path}", *args)
    assert not any(tmp_path.iterdir())


def test_tiny_run_writes_json_and_table(tmp_path, capsys):
    out = tmp_path / "r.json"
    md = tmp_path / "r.md"
    call("--bench=input-pipeline", f"--bench_dir={tmp_path / 'data'}", "--num_videos=2",
         "--video_frames=12,16", "--video_size=96x72", "--bench_input_size=64",
         "--bench_batch_size=4", "--warmup_batches=1", "--timed_batches=2", "--pyav_batches=1",
         "--repeats=1", "--record_shards=2", f"--json={out}", f"--output_md={md}")
    res = json.loads(out.read_text())
    for key in ("pipeline_clips_per_s", "bound_clips_per_s", "tfrecord_clips_per_s",
                "python_frames_clips_per_s", "python_pyav_clips_per_s"):
        assert res[key] > 0, key
    assert set(res["clips_per_s"]) == set(job.INPUT_VARIANTS)
    assert all(v > 0 for v in res["clips_per_s"].values())
    fastest = res["fastest_layout"]
    assert res["pipeline_clips_per_s"] == max(res["clips_per_s"]["tfrecord"],
                                              res["clips_per_s"]["frames"])
    assert res["bound_clips_per_s"] == res["clips_per_s"][f"{fastest}.bound"]
    for shares in res["shares"].values():
        assert sum(shares.values()) == pytest.approx(1.0)
    assert res["data"]["videos"] == 2 and res["data"]["frames"] == 28
    assert res["settings"]["batch_size"] == 4
    assert "(b) Python loader" in capsys.readouterr().out
    assert md.read_text().startswith("| variant | clips/s |")


def test_every_benchmark_is_a_bench_choice():
    """--bench accepts exactly the benchmarks the job can run (tflite and temporal-order were
    registered but refused by the flag)."""
    from absl import flags as absl_flags

    from pipelines import benchmark
    choices = absl_flags.FLAGS["bench"].parser.enum_values
    assert sorted(choices) == sorted(benchmark.BENCHMARKS)
