"""Tests for tfvid.prep.video: PyAV decoding, resizing, resampling, errors, JPEG helpers."""
import logging

import av
import numpy as np
import pytest

from tfvid.prep import video as vid


def _frames(n=30, w=64, h=48):
    """A bar sweeping right over a gradient: smooth content that codecs keep well."""
    x = np.linspace(0, 255, w, dtype=np.float32)
    base = np.stack([np.broadcast_to(x, (h, w)), np.full((h, w), 60.0),
                     np.broadcast_to(np.linspace(0, 255, h)[:, None], (h, w))], -1)
    out = np.repeat(base[None], n, 0).astype(np.uint8)
    for i in range(n):
        x0 = (2 * i) % (w - 8)
        out[i, :, x0:x0 + 8] = 255
    return out


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    d = tmp_path_factory.mktemp("videos")
    frames = _frames()
    return {ext: vid.write_video(d / f"clip{ext}", frames, fps=25) for ext in (".mp4", ".avi")}, frames


@pytest.mark.parametrize("ext", [".mp4", ".avi"])
def test_read_written_video(clips, ext):
    paths, frames = clips
    v = vid.read_video(paths[ext], frame_size=None)
    assert v.frames.shape == (30, 48, 64, 3) and v.frames.dtype == np.uint8
    assert v.num_frames == 30 and v.size == (64, 48) and v.source_size == (64, 48)
    assert v.frame_rate == pytest.approx(25.0)
    assert v.timestamps_us.dtype == np.int64
    assert v.timestamps_us[0] == 0 and np.all(np.diff(v.timestamps_us) > 0)
    np.testing.assert_allclose(v.timestamps_us, np.arange(30) * 40000, atol=1000)
    # decoded content is close to what was written (lossy codec)
    assert np.abs(v.frames.astype(np.float32) - frames).mean() < 6
    # the sweeping bar is where it was written: the brightest column block moves right
    assert np.argmax(v.frames[5, 24, :, 1]) < np.argmax(v.frames[20, 24, :, 1])


def test_frame_size_and_short_side(clips):
    paths, _ = clips
    v = vid.read_video(paths[".mp4"])  # default TSN size
    assert v.frames.shape == (30, 256, 340, 3) and v.source_size == (64, 48)
    v = vid.read_video(paths[".mp4"], frame_size=(32, 24))
    assert v.frames.shape[1:] == (24, 32, 3)
    v = vid.read_video(paths[".avi"], short_side=36, frame_size=(10, 10))  # frame_size ignored
    assert v.size == (48, 36)
    assert vid.output_size((64, 48), short_side=25) == (34, 26)   # even sizes
    assert vid.output_size((480, 640), short_side=256) == (256, 342)
    assert vid.output_size((320, 240), frame_size=None) == (320, 240)


def test_fps_resampling_and_max_frames(tmp_path):
    path = vid.write_video(tmp_path / "long.mp4", _frames(n=100, w=32, h=24), fps=25)
    v = vid.read_video(path, fps=1.0, frame_size=None)
    assert v.num_frames == 4 and v.frame_rate == 1.0          # 4 s of video
    np.testing.assert_allclose(v.timestamps_us, [0, 1e6, 2e6, 3e6], atol=1000)
    v = vid.read_video(path, fps=10, frame_size=None)
    assert v.num_frames == 40
    assert np.all(np.diff(v.timestamps_us) >= 0)
    v = vid.read_video(path, fps=50, frame_size=None)         # upsampling repeats frames
    assert v.num_frames == 200
    assert vid.read_video(path, max_frames=7, frame_size=None).num_frames == 7
    assert vid.read_video(path, fps=1.0, max_frames=2, frame_size=None).num_frames == 2
    with pytest.raises(ValueError, match="fps"):
        vid.read_video(path, fps=0)


def test_corrupt_file_names_the_file(tmp_path):
    bad = tmp_path / "random_bytes.mp4"
    bad.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(vid.VideoError, match="random_bytes.mp4") as e:
        vid.read_video(bad)
    assert e.value.path == str(bad) and e.value.reason


def test_empty_and_missing_files(tmp_path):
    empty = tmp_path / "empty.avi"
    empty.write_bytes(b"")
    with pytest.raises(vid.VideoError, match="empty.avi.*empty"):
        vid.read_video(empty)
    with pytest.raises(vid.VideoError, match="nope.mp4.*not found"):
        vid.read_video(tmp_path / "nope.mp4")
    with pytest.raises(vid.VideoError, match="no frame images"):  # a folder is a frame folder
        vid.read_video(tmp_path)
    with pytest.raises(vid.VideoError, match="frame folder not found"):
        vid.read_frame_folder(tmp_path / "gone")


def test_no_video_stream(tmp_path):
    path = str(tmp_path / "audio.wav")
    with av.open(path, "w") as c:
        s = c.add_stream("pcm_s16le", rate=8000)
        f = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16", layout="mono")
        f.sample_rate = 8000
        for p in list(s.encode(f)) + list(s.encode()):
            c.mux(p)
    with pytest.raises(vid.VideoError, match="audio.wav.*no video stream"):
        vid.read_video(path)


def test_truncated_avi_keeps_decoded_frames(clips, tmp_path, caplog):
    paths, _ = clips
    data = open(paths[".avi"], "rb").read()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(data[: int(len(data) * 0.8)])
    with caplog.at_level(logging.WARNING, logger="tfvid.prep.video"):
        v = vid.read_video(cut, frame_size=None)
    assert 0 < v.num_frames < 30
    assert "cut.avi" in caplog.text


class _FailingContainer:
    """Yields a few real frames, then raises like a broken packet would."""

    def __init__(self, frames, fail_after):
        self._frames, self._fail_after = frames, fail_after

    def decode(self, stream):
        for i, f in enumerate(self._frames):
            if i == self._fail_after:
                raise av.error.InvalidDataError(-1094995529, "Invalid data found", "x.mp4")
            yield f


def test_decode_error_after_frames_keeps_them(caplog):
    frames = [av.VideoFrame.from_ndarray(f, format="rgb24") for f in _frames(n=5, w=16, h=16)]
    with caplog.at_level(logging.WARNING, logger="tfvid.prep.video"):
        got = list(vid._decoded_frames(_FailingContainer(frames, 3), None, "x.mp4"))
    assert len(got) == 3 and "x.mp4" in caplog.text
    with pytest.raises(vid.VideoError, match="x.mp4.*no decodable frame"):
        list(vid._decoded_frames(_FailingContainer(frames, 0), None, "x.mp4"))


def test_jpeg_helpers_keep_rgb_order():
    img = np.zeros((16, 24, 3), np.uint8)
    img[..., 0] = 200  # pure red
    blobs = vid.encode_jpegs(np.stack([img, img // 2]), quality=95)
    assert len(blobs) == 2 and blobs[0][:2] == b"\xff\xd8"
    back = vid.decode_jpeg(blobs[0])
    assert back.shape == (16, 24, 3)
    assert abs(int(back[..., 0].mean()) - 200) <= 3 and back[..., 2].mean() < 5
    gray = vid.decode_jpeg(vid.encode_jpegs([img[..., 0]])[0], grayscale=True)
    assert gray.shape == (16, 24)
    with pytest.raises(ValueError, match="JPEG"):
        vid.decode_jpeg(b"not a jpeg")


def test_write_video_checks(tmp_path):
    with pytest.raises(ValueError, match="even"):
        vid.write_video(tmp_path / "odd.mp4", np.zeros((2, 15, 16, 3), np.uint8))
    with pytest.raises(ValueError, match="extension"):
        vid.write_video(tmp_path / "x.xyz", np.zeros((2, 16, 16, 3), np.uint8))
    a = vid.write_video(tmp_path / "a.mp4", _frames(n=5, w=16, h=16))
    b = vid.write_video(tmp_path / "b.mp4", _frames(n=5, w=16, h=16))
    assert open(a, "rb").read() == open(b, "rb").read()  # deterministic encoder settings


def _rotated_video(path, degrees, n=4, w=48, h=36):
    """A video whose frames carry a white marker in the stored top-left corner, written with a
    display rotation (the MP4 display matrix, as phones write it)."""
    frame = np.zeros((h, w, 3), np.uint8)
    frame[:8, :8] = 255
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=25, options={"crf": "18", "threads": "1"})
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        s.set_display_rotation(degrees)
        for _ in range(n):
            for p in s.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return str(path)


def _corner(img):
    """Which corner holds the marker: tl, tr, bl or br."""
    h, w = img.shape[:2]
    q = {"tl": img[:8, :8], "tr": img[:8, w - 8:], "bl": img[h - 8:, :8], "br": img[h - 8:, w - 8:]}
    return max(q, key=lambda k: q[k].mean())


@pytest.mark.parametrize("degrees,corner", [(-90, "tr"), (90, "bl"), (180, "br")])
def test_display_rotation_is_applied(tmp_path, degrees, corner):
    # A phone held upright stores landscape frames with "rotate 90 clockwise" (display matrix
    # -90 degrees counter-clockwise): the stored top-left corner is shown top-right.
    path = _rotated_video(tmp_path / "phone.mp4", degrees)
    v = vid.read_video(path, frame_size=None)
    sideways = degrees % 180 != 0
    assert v.frames.shape[1:3] == ((48, 36) if sideways else (36, 48))
    assert v.source_size == ((36, 48) if sideways else (48, 36))
    assert v.rotation == degrees % 360
    assert _corner(v.frames[0]) == corner
    small = vid.read_video(path, frame_size=(18, 24))          # sizes refer to upright frames
    assert small.frames.shape[1:3] == (24, 18) and _corner(small.frames[0]) == corner
    raw = vid.read_video(path, frame_size=None, apply_rotation=False)
    assert raw.frames.shape[1:3] == (36, 48) and _corner(raw.frames[0]) == "tl"


def test_rotate_frame_on_arrays():
    img = np.arange(6).reshape(2, 3)
    assert vid.rotate_frame(img, 90).tolist() == [[2, 5], [1, 4], [0, 3]]   # counter-clockwise
    assert vid.rotate_frame(img, 270).tolist() == [[3, 0], [4, 1], [5, 2]]
    assert vid.rotate_frame(img, 180).tolist() == [[5, 4, 3], [2, 1, 0]]
    assert vid.rotate_frame(img, 0) is img
    with pytest.raises(ValueError, match="multiple of 90"):
        vid.rotate_frame(img, 45)


def test_truncated_file_is_reported_partial(tmp_path):
    frames = np.random.default_rng(0).integers(0, 255, (20, 36, 48, 3), np.uint8)
    for ext in (".avi", ".mkv"):
        path = vid.write_video(tmp_path / f"full{ext}", frames)
        assert vid.read_video(path).partial is None
        data = open(path, "rb").read()
        cut = tmp_path / f"cut{ext}"
        cut.write_bytes(data[: int(len(data) * 0.7)])
        v = vid.read_video(cut, frame_size=None)
        assert v.expected_frames == 20 and 0 < v.num_frames < 20
        assert v.partial.startswith(f"{v.num_frames} of 20 frames decoded")
