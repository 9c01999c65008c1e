"""Per-frame features of a frozen frame-level network (pipelines/extract_features.py): the first
stage of the DenseImage network and VideoMap, which work on cached per-frame vectors.

    net = load_run_network("runs/tsn_rgb")                 # a trained TSN run's backbone
    net = load_backbone_network("resnet50", "resnet50.weights.h5")   # or an ImageNet backbone
    extract_features(shards, "data/ucf101_feat", net, density=Density("all"), crops=1)

The network is the backbone of a TSN run (rebuilt from run_config.json, the checkpoint
restored; its global-average-pool output, before dropout and the classifier: 1024-d for
BN-Inception, 2048-d for ResNet-50) or an ImageNet backbone from a weights file. What it sees
at a position p follows the run: rgb one frame (L = 1), flow the stack of L = 5 flow frames
centred on flow frame p (p-2..p+2, the window shifted to stay inside the n-1 flow frames near
the ends; 2L = 10 channels), rgbdiff the L = 6 frames centred on p. Frames are cropped as the
evaluation input is (tfvid.data.augment: GroupScale to input_size*256/224, then the centre crop,
or 3 / 10 crops whose pooled features are averaged) and normalised for the backbone
(augment.normalize). The positions (`Density`): every frame, a fixed rate from the stored
frame rate, or N positions spread uniformly (TSN's test rule).

Output: one SequenceExample per video in MediaSequence form (tfvid.data.schema.set_features):
FEATURE/<name>/floats (m rows of D floats), FEATURE/<name>/frame_index and /timestamp (m int64
each), FEATURE/<name>/dimension and the fields of `FrameNetwork.context` + density + crops in the
context; id, labels, frame rate and size of the input context are kept. Frames and flow are
dropped unless keep_frames (then the input record is copied with the features added).

Reliability, as prepare_data / extract_flow: one output shard per input shard (same name),
written under a temporary name and renamed when complete; extract_features-progress.jsonl lists
finished shards, so a rerun skips them (and refuses other options: extract_features-manifest.json
holds them); a record that does not parse or a video that cannot be decoded is skipped and listed
in extract_features-rejects.tsv (shard, record number, video id, reason); a truncated or corrupt
shard gets no output (reported, retried by a rerun); a folder lock keeps a second job out.
"""
from __future__ import annotations

import collections
import concurrent.futures as futures
import dataclasses
import inspect
import json
import os
import shutil
import time

import numpy as np

from tfvid.atomic import atomic_path

JOB = "extract_features"
MANIFEST_VERSION = 1
CROPS = (1, 3, 10)
DENSITY_KINDS = ("all", "fps", "num_frames")


# ------------------------------------------------------------------------------- positions
@dataclasses.dataclass(frozen=True)
class Density:
    """Where features are computed: kind 'all' (every stored frame), 'fps' (value frames per
    second of video time, from the stored frame rate) or 'num_frames' (value positions spread
    uniformly over the video: TSN's test rule floor(t/2 + t*k), t = n/value)."""
    kind: str = "all"
    value: float = 0

    def __post_init__(self):
        if self.kind not in DENSITY_KINDS:
            raise ValueError(f"density kind must be one of {DENSITY_KINDS}, got {self.kind!r}")
        if self.kind == "fps" and not self.value > 0:
            raise ValueError(f"--fps must be positive, got {self.value}")
        if self.kind == "num_frames" and (int(self.value) != self.value or self.value < 1):
            raise ValueError(f"--num_frames must be a positive integer, got {self.value}")

    def __str__(self) -> str:
        if self.kind == "all":
            return "all"
        value = int(self.value) if self.kind == "num_frames" else float(self.value)
        return f"{self.kind}={value:g}" if self.kind == "fps" else f"{self.kind}={value}"

    @property
    def rate(self) -> float:
        """Positions per second of video for kind 'fps', else 0."""
        return float(self.value) if self.kind == "fps" else 0.0

    def positions(self, num_frames: int, frame_rate: float = 0.0) -> np.ndarray:
        """int64 (m,) frame indices in [0, num_frames) (repeats possible: a rate above the
        stored one, or more positions than frames). ValueError for 'fps' without a frame rate
        or for an empty video."""
        n = int(num_frames)
        if n < 1:
            raise ValueError("no frames")
        if self.kind == "all":
            return np.arange(n, dtype=np.int64)
        if self.kind == "num_frames":
            from tfvid.data.sampling import segment_starts
            return segment_starts(n, int(self.value), 1, "test").numpy().astype(np.int64)
        if not frame_rate > 0:
            raise ValueError("no stored frame rate (image/frame_rate) for --fps")
        step = frame_rate / self.value                      # stored frames per position
        count = max(1, int(np.ceil(n / step - 1e-9)))
        idx = np.floor(np.arange(count) * step + 1e-9).astype(np.int64)
        return np.minimum(idx, n - 1)


def parse_density(frames: str | None = "all", fps: float = 0.0, num_frames: int = 0) -> Density:
    """The job's --frames / --fps / --num_frames -> Density. ValueError when more than one is
    set, or --frames is not 'all'."""
    if frames not in (None, "", "all"):
        raise ValueError(f"--frames: only 'all' is known, got {frames!r} (use --fps or "
                         "--num_frames for fewer positions)")
    given = [k for k, v in (("fps", fps), ("num_frames", num_frames)) if v]
    if len(given) > 1:
        raise ValueError("give one of --fps and --num_frames, not both")
    if not given:
        return Density("all")
    return Density(given[0], fps if given[0] == "fps" else int(num_frames))


def window_indices(positions, length: int, count: int) -> np.ndarray:
    """(m,) positions -> int64 (m, L) frame indices of a stream of `count` frames: L consecutive
    frames centred on each position (starting at p - L//2), the window shifted to stay inside
    [0, count) near the ends, and clamped when count < L."""
    positions = np.asarray(positions, np.int64)
    start = np.clip(positions - length // 2, 0, max(count - length, 0))
    idx = start[:, None] + np.arange(length, dtype=np.int64)[None, :]
    return np.clip(idx, 0, max(count - 1, 0))


# --------------------------------------------------------------------------------- network
@dataclasses.dataclass
class FrameNetwork:
    """A frame-level network: `net` maps (B, S, S, C) normalised inputs to (B, D) features.

    context: what made the features (model, source, checkpoint, backbone, width), recorded in
    every output record and in the manifest."""
    net: object
    backbone: str
    modality: str
    new_length: int
    input_size: int
    context: dict
    _fns: dict = dataclasses.field(default_factory=dict, repr=False)

    @property
    def channels(self) -> int:
        from tfvid.data.modality import num_channels
        return num_channels(self.modality, self.new_length)

    @property
    def feature_dim(self) -> int:
        return int(self.net.output_shape[-1])

    def describe(self) -> dict:
        """JSON-able description: context + backbone, modality, new_length, input_size, dim."""
        return {**self.context, "backbone": self.backbone, "modality": self.modality,
                "new_length": self.new_length, "input_size": self.input_size,
                "dimension": self.feature_dim}

    def _fn(self, crops: int):
        """tf.function (streams, windows (t, L)) -> float32 (t, D): gather and stack the
        window frames, evaluation views, normalise, the network, mean over the views."""
        if crops in self._fns:
            return self._fns[crops]
        import tensorflow as tf

        from tfvid.data import augment, modality as mod
        size, is_flow, net = self.input_size, self.modality == "flow", self.net
        c0 = (2 if is_flow else 3) * self.new_length
        dim = self.feature_dim

        @tf.function(reduce_retracing=True)
        def run(streams, windows):
            if is_flow:
                stacked = mod.flow_stack(tf.gather(streams[0], windows),
                                         tf.gather(streams[1], windows))
            else:
                stacked = mod.rgb_stack(tf.gather(streams[0], windows))
            views = augment.eval_views(stacked, crops, size, is_flow)   # (V, t, S, S, C0)
            views = tf.ensure_shape(views, [crops, None, size, size, c0])
            if self.modality == "rgbdiff":
                views = mod.rgb_diff_channels(views)
            x = augment.normalize(views, self.backbone, self.modality)
            out = net(tf.reshape(x, [-1, size, size, x.shape[-1]]), training=False)
            return tf.reduce_mean(tf.reshape(tf.cast(out, tf.float32), [crops, -1, dim]), 0)

        self._fns[crops] = run
        return run

    def features(self, streams, windows, *, crops: int = 1, batch_size: int = 64) -> np.ndarray:
        """streams: decoded uint8 arrays, [frames (n, H, W, 3)] or [flow_x, flow_y (n-1, H, W)];
        windows: (m, L) indices into them. Returns float32 (m, D), computed `batch_size`
        images (positions x crops) at a time."""
        import tensorflow as tf
        if crops not in CROPS:
            raise ValueError(f"crops must be one of {CROPS}, got {crops}")
        fn = self._fn(crops)
        step = max(1, int(batch_size) // crops)
        streams = tuple(tf.convert_to_tensor(s) for s in streams)
        windows = np.asarray(windows, np.int32)
        out = [fn(streams, tf.constant(windows[i:i + step]))
               for i in range(0, len(windows), step)]
        return np.concatenate([o.numpy() for o in out], 0)


def _tsn_defaults() -> dict:
    from tfvid.models.tsn import build_tsn
    return {k: p.default for k, p in inspect.signature(build_tsn).parameters.items()
            if p.default is not inspect.Parameter.empty}


def load_run_network(model_dir: str, checkpoint: str | None = None) -> FrameNetwork:
    """The backbone of a trained TSN run: the model rebuilt from run_config.json, `checkpoint`
    (default: the latest) restored, and its backbone sub-model (global-pool output, before
    dropout and the classifier) taken. Modality, L, input size and width follow the run.
    ValueError for runs of other models (their frame features are not a plain backbone's)."""
    from tfvid.models.snippets import DEFAULT_NEW_LENGTH
    from tfvid.train import run_dir
    cfg = run_dir.read_run_config(model_dir)
    if cfg["model"] != "tsn":
        raise ValueError(f"{model_dir}: model {cfg['model']!r}; per-frame features come from "
                         "TSN runs (a backbone seeing one frame or flow stack at a time), or "
                         "use --backbone with --weights")
    kwargs = {**_tsn_defaults(), **run_dir.builder_kwargs(cfg)}
    model = run_dir.build_model(cfg, num_segments=None)
    path = run_dir.restore(model, model_dir, checkpoint)
    backbone = kwargs["backbone"]
    try:
        net = model.get_layer(backbone)
    except ValueError:
        raise ValueError(f"{model_dir}: the rebuilt model has no backbone layer {backbone!r}") \
            from None
    modality = kwargs["modality"]
    new_length = int(kwargs.get("new_length") or DEFAULT_NEW_LENGTH[modality])
    return FrameNetwork(net, backbone, modality, new_length, int(net.input_shape[1]), {
        "model": model.name, "source": os.path.abspath(model_dir),
        "checkpoint": os.path.abspath(path), "width": float(kwargs.get("width", 1.0))})


def load_backbone_network(backbone: str, weights: str | None, *, modality: str = "rgb",
                          new_length: int | None = None, input_size: int = 224,
                          width: float = 1.0) -> FrameNetwork:
    """A tfvid.models.backbones backbone with `weights` ('imagenet' or a .weights.h5 file;
    conv1 adapted by TSN's cross-modality rule for flow / rgbdiff), global average pooled."""
    from tfvid.data.modality import num_channels
    from tfvid.models.backbones import build_backbone
    from tfvid.models.snippets import DEFAULT_NEW_LENGTH
    if not weights:
        raise ValueError("an ImageNet backbone needs weights ('imagenet' or a .weights.h5 "
                         "file): random features are of no use")
    if weights != "imagenet" and not os.path.isfile(weights):
        raise FileNotFoundError(f"weights file {weights!r} not found")
    new_length = int(new_length or DEFAULT_NEW_LENGTH.get(modality, 1))
    channels = num_channels(modality, new_length)
    net = build_backbone(backbone, input_shape=(input_size, input_size, channels), width=width,
                         weights=weights, pooling="avg", conv1_rule="average")
    source = weights if weights == "imagenet" else os.path.abspath(weights)
    return FrameNetwork(net, backbone, modality, new_length, int(input_size), {
        "model": backbone, "source": source, "checkpoint": source, "width": float(width)})


# ---------------------------------------------------------------------------- per video
class _Reject(Exception):
    """A video that cannot be used; the message is the reason."""


def _jpeg_complete(data: bytes) -> bool:
    return len(data) >= 4 and data[:2] == b"\xff\xd8" and data[-2:] == b"\xff\xd9"


_DECODERS: dict = {}


def _decode(encoded: list, indices, channels: int, what: str):
    """JPEG strings (the frames `indices` of a stream) -> uint8 (k, H, W, channels), one graph
    call; _Reject naming the frame."""
    import tensorflow as tf
    for k, data in zip(indices, encoded):
        if not _jpeg_complete(data):
            raise _Reject(f"{what} {k} is not a complete JPEG")
    if channels not in _DECODERS:
        @tf.function(reduce_retracing=True)
        def decode(strings):
            return tf.map_fn(lambda s: tf.io.decode_jpeg(s, channels=channels), strings,
                             fn_output_signature=tf.TensorSpec([None, None, channels],
                                                               tf.uint8))
        _DECODERS[channels] = decode
    try:
        return _DECODERS[channels](tf.constant(encoded, tf.string))
    except (tf.errors.InvalidArgumentError, tf.errors.UnknownError) as e:
        raise _Reject(f"{what}s not decodable: {' '.join(e.message.split())[:200]}") from None


def _bytes_list(ex, key) -> list:
    return [f.bytes_list.value[0] if f.bytes_list.value else b""
            for f in ex.feature_lists.feature_list[key].feature]


def _video_id(ex) -> str:
    from tfvid.data import schema
    ids = ex.context.feature[schema.ID].bytes_list.value if schema.ID in ex.context.feature \
        else []
    return ids[0].decode("utf-8", "replace") if ids else ""


def prepare_video(ex, network: FrameNetwork, density: Density) -> dict:
    """One parsed SequenceExample -> the inputs of FrameNetwork.features: {streams, windows
    (unique positions), positions (m,), inverse (rows of the unique positions), timestamps}.
    Only the frames the windows use are decoded. Raises _Reject with the reason."""
    from tfvid.data import schema
    ctx = ex.context.feature
    frames = _bytes_list(ex, schema.FRAMES)
    n = len(frames)
    if n == 0:
        raise _Reject("no frames (image/encoded is empty)")
    rate = ctx[schema.FRAME_RATE].float_list.value[0] \
        if schema.FRAME_RATE in ctx and ctx[schema.FRAME_RATE].float_list.value else 0.0
    try:
        positions = density.positions(n, rate)
    except ValueError as e:
        raise _Reject(str(e)) from None
    unique, inverse = np.unique(positions, return_inverse=True)
    stamps = [f.int64_list.value[0] if f.int64_list.value else 0
              for f in ex.feature_lists.feature_list[schema.TIMESTAMPS].feature]
    if len(stamps) != n:
        stamps = [round(i * 1e6 / rate) if rate > 0 else 0 for i in range(n)]
    if network.modality == "flow":
        fx, fy = _bytes_list(ex, schema.FLOW_X), _bytes_list(ex, schema.FLOW_Y)
        if not fx:
            raise _Reject("no optical flow in the record (prepare_data --flow or extract_flow)")
        if len(fx) != len(fy) or len(fx) != n - 1:
            raise _Reject(f"{n} frames need {n - 1} flow frames, got x={len(fx)} y={len(fy)}")
        count, sources, channels, what = len(fx), [fx, fy], 1, "flow frame"
    else:
        count, sources, channels, what = n, [frames], 3, "frame"
    windows = window_indices(unique, network.new_length, count)
    needed = np.unique(windows)
    streams = []
    for src in sources:
        decoded = _decode([src[i] for i in needed], needed.tolist(), channels, what)
        streams.append(decoded[..., 0] if channels == 1 else decoded)
    return {"streams": streams, "windows": np.searchsorted(needed, windows),
            "positions": positions, "inverse": inverse,
            "timestamps": [stamps[i] for i in positions]}


def output_example(ex, keep_frames: bool):
    """The record the features are added to: the input itself (keep_frames) or its context
    without image/format and FORWARD_FLOW/* keys plus any FEATURE/* lists it already holds."""
    import tensorflow as tf

    from tfvid.data import schema
    if keep_frames:
        out = tf.train.SequenceExample()
        out.CopyFrom(ex)
        return out
    out = tf.train.SequenceExample()
    for key, value in ex.context.feature.items():
        if key != schema.IMAGE_FORMAT and not key.startswith("FORWARD_FLOW/"):
            out.context.feature[key].CopyFrom(value)
    for key, value in ex.feature_lists.feature_list.items():
        if key.startswith("FEATURE/"):
            out.feature_lists.feature_list[key].CopyFrom(value)
    return out


def _ahead(items, fn, depth: int = 2):
    """Yields (item, fn(item)) in order with fn running `depth` items ahead in one thread
    (decoding the next video while the network runs). fn must not raise."""
    with futures.ThreadPoolExecutor(max_workers=1) as pool:
        pending: collections.deque = collections.deque()
        for item in items:
            pending.append((item, pool.submit(fn, item)))
            if len(pending) > depth:
                item0, job = pending.popleft()
                yield item0, job.result()
        while pending:
            item0, job = pending.popleft()
            yield item0, job.result()


# ------------------------------------------------------------------------------- the job
def _compression(path: str) -> str:
    """Shards named *.gz are GZIP TFRecords (as build_dataset reads them)."""
    return "GZIP" if path.endswith(".gz") else ""


def _records(path: str):
    """(record number, serialized bytes) of a shard, streamed; DataLossError naming the shard
    and the record where it broke."""
    import tensorflow as tf
    k = 0
    try:
        for record in tf.data.TFRecordDataset(path, compression_type=_compression(path)):
            yield k, record.numpy()
            k += 1
    except tf.errors.DataLossError as e:
        raise tf.errors.DataLossError(
            None, None, f"{path}: corrupt at record {k}: {' '.join(e.message.split())}") \
            from None


def _load_manifest(path: str, options: dict, started: bool) -> None:
    """Writes the manifest, or checks it when `started` (some shard is finished): ValueError
    naming the options that differ. Before any shard is finished the options may change."""
    if started and os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            old = json.load(f).get("options", {})
        diff = sorted(k for k in set(old) | set(options) if old.get(k) != options.get(k))
        if diff:
            shown = ", ".join(f"{k}: {old.get(k)!r} -> {options.get(k)!r}" for k in diff)
            raise ValueError(f"{os.path.dirname(path)} holds features made with other options "
                             f"({shown}); rerun with the same options to resume, or use "
                             "another output_dir")
        return
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        json.dump({"version": MANIFEST_VERSION, "options": options}, f, indent=1)


def _check_flow_present(shards, network: FrameNetwork) -> None:
    """A flow network on data without flow: ValueError at once (not one reject per video).
    Looks at the first record that parses; a corrupt shard is left to the per-shard report."""
    import tensorflow as tf
    from google.protobuf.message import DecodeError

    from tfvid.data import schema
    if network.modality != "flow":
        return
    try:
        for _, raw in _records(shards[0]):
            try:
                ex = tf.train.SequenceExample.FromString(raw)
            except DecodeError:
                continue
            lists = ex.feature_lists.feature_list
            if not lists[schema.FLOW_X].feature and len(lists[schema.FRAMES].feature) > 1:
                raise ValueError(f"{shards[0]} holds no optical flow, and the network takes "
                                 "flow: prepare with --flow or run extract_flow first")
            return
    except tf.errors.DataLossError:
        return


def _copy_classes(shards, output_dir: str) -> None:
    src = os.path.join(os.path.dirname(shards[0]), "classes.txt") if shards else ""
    dst = os.path.join(output_dir, "classes.txt")
    if os.path.isfile(src) and not os.path.exists(dst):
        with atomic_path(dst) as tmp:
            shutil.copyfile(src, tmp)


def feature_options(network: FrameNetwork, feature_name: str, density: Density, crops: int,
                    keep_frames: bool) -> dict:
    """What decides the features: the manifest's options (a rerun must match them)."""
    return {"feature_name": feature_name, **network.describe(), "density": str(density),
            "crops": int(crops), "keep_frames": bool(keep_frames)}


def extract_features(shards, output_dir: str, network: FrameNetwork, *,
                     feature_name: str | None = None, density: Density = Density(),
                     crops: int = 1, keep_frames: bool = False, batch_size: int = 64,
                     progress: bool = True) -> dict:
    """Writes the features of every video of `shards` to output_dir/<same shard names>.

    feature_name: default the network's modality. Returns the summary also written to
    output_dir/extract_features-summary.json: videos, frames (feature rows, finished shards
    of earlier runs included), frames_computed / seconds / frames_per_second (this run),
    feature_dim, shards written / skipped / failed, rejects, options, files. Raises ValueError
    (bad options, options that differ from an earlier run in output_dir, output_dir holding
    the inputs, flow network on data without flow) or tfvid.lock.LockedError.
    """
    from tfvid.lock import folder_lock
    feature_name = feature_name or network.modality
    if not feature_name or "/" in feature_name:
        raise ValueError(f"bad feature name {feature_name!r}")
    if crops not in CROPS:
        raise ValueError(f"crops must be one of {CROPS}, got {crops}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    shards = [os.path.abspath(p) for p in shards]
    if not shards:
        raise ValueError("no input shards")
    output_dir = os.path.abspath(output_dir)
    if any(os.path.dirname(p) == output_dir for p in shards):
        raise ValueError(f"output_dir {output_dir} holds the input shards; choose another "
                         "folder (feature shards take the input shards' names)")
    names = [os.path.basename(p) for p in shards]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ValueError(f"input shards of the same name in several folders: {twice}")
    options = feature_options(network, feature_name, density, crops, keep_frames)
    os.makedirs(output_dir, exist_ok=True)
    with folder_lock(os.path.join(output_dir, f".{JOB}.lock"), JOB):
        from tfvid.prep.prepare import load_progress
        started = bool(load_progress(os.path.join(output_dir, f"{JOB}-progress.jsonl"))) or \
            any(os.path.exists(os.path.join(output_dir, n)) for n in names)
        _load_manifest(os.path.join(output_dir, f"{JOB}-manifest.json"), options, started)
        _check_flow_present(shards, network)
        _copy_classes(shards, output_dir)
        return _extract_locked(shards, output_dir, network, options, density=density,
                               crops=crops, keep_frames=keep_frames, batch_size=batch_size,
                               progress=progress)


def _extract_locked(shards, output_dir, network, options, *, density, crops, keep_frames,
                    batch_size, progress) -> dict:
    import tensorflow as tf

    from tfvid.data import schema
    from tfvid.prep.prepare import load_progress
    from tfvid.progress import progress_bar
    name = options["feature_name"]
    context = {k: options[k] for k in ("model", "source", "checkpoint", "backbone", "width",
                                       "modality", "new_length", "input_size", "density",
                                       "crops")}
    context["rate"] = density.rate
    start, rejects, failed = time.time(), [], []
    counts = dict(written=0, skipped=0, videos=0, frames=0, computed=0)
    log_path = os.path.join(output_dir, f"{JOB}-progress.jsonl")
    finished = load_progress(log_path)

    def add(info):
        rejects.extend(tuple(r) for r in info["rejects"])
        counts["videos"] += info["videos"]
        counts["frames"] += info["frames"]

    def prepare(item):
        k, raw = item
        try:
            ex = tf.train.SequenceExample.FromString(raw)
        except Exception as e:  # noqa: BLE001 - a protobuf DecodeError: reported, not fatal
            return None, f"record does not parse as a SequenceExample: {type(e).__name__}"
        try:
            return ex, prepare_video(ex, network, density)
        except _Reject as e:
            return ex, str(e)
        except Exception as e:  # noqa: BLE001 - a bad video must not stop the job
            return ex, " ".join(f"{type(e).__name__}: {e}".split())[:300]

    bar = progress_bar(total=None, unit="frame", desc=JOB, disable=not progress,
                       dynamic_ncols=True)
    try:
        for path in shards:
            shard = os.path.basename(path)
            final = os.path.join(output_dir, shard)
            if os.path.exists(final):
                counts["skipped"] += 1
                if shard in finished:
                    add(finished[shard])
                continue
            done, shard_rejects = dict(videos=0, frames=0), []
            try:
                with atomic_path(final) as tmp, \
                        tf.io.TFRecordWriter(tmp, _compression(final)) as writer:
                    for (k, _), (ex, video) in _ahead(_records(path), prepare):
                        if isinstance(video, str):
                            vid = _video_id(ex) if ex is not None else ""
                            shard_rejects.append((path, k, vid, video))
                            bar.set_postfix(videos=counts["videos"] + done["videos"],
                                            rejects=len(rejects) + len(shard_rejects))
                            continue
                        feats = network.features(video["streams"], video["windows"],
                                                 crops=crops, batch_size=batch_size)
                        out = schema.set_features(
                            output_example(ex, keep_frames), name, feats[video["inverse"]],
                            frame_indices=video["positions"],
                            timestamps_us=video["timestamps"], context=context)
                        writer.write(out.SerializeToString())
                        m = len(video["positions"])
                        done["videos"] += 1
                        done["frames"] += m
                        bar.update(m)
                        bar.set_postfix(videos=counts["videos"] + done["videos"],
                                        rejects=len(rejects) + len(shard_rejects))
            except tf.errors.DataLossError as e:       # nothing of this shard is kept
                failed.append({"shard": path, "error": e.message})
                rejects.append((path, "", "", f"corrupt shard: {e.message}"))
                continue
            info = {"name": shard, **done, "rejects": shard_rejects}
            with open(log_path, "a", encoding="utf-8") as f:    # after the rename: resumable
                f.write(json.dumps(info) + "\n")
                f.flush()
                os.fsync(f.fileno())
            counts["written"] += 1
            counts["computed"] += done["frames"]
            add(info)
    finally:
        bar.close()
    seconds = time.time() - start
    summary = {"feature_name": name, "feature_dim": network.feature_dim,
               "videos": counts["videos"], "frames": counts["frames"],
               "frames_computed": counts["computed"], "seconds": round(seconds, 3),
               "frames_per_second": round(counts["computed"] / seconds, 2) if seconds else 0.0,
               "shards_written": counts["written"], "shards_skipped": counts["skipped"],
               "shards_failed": failed, "options": options, "output_dir": output_dir}
    return _write_report(output_dir, rejects, summary)


def _write_report(output_dir: str, rejects: list, summary: dict) -> dict:
    files = {"rejects": os.path.join(output_dir, f"{JOB}-rejects.tsv"),
             "summary": os.path.join(output_dir, f"{JOB}-summary.json"),
             "manifest": os.path.join(output_dir, f"{JOB}-manifest.json")}
    with atomic_path(files["rejects"]) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.write("shard\trecord\tvideo\treason\n")
        f.writelines("\t".join(" ".join(str(v).split()) for v in r) + "\n" for r in rejects)
    summary = {**summary, "rejects": len(rejects), "files": files}
    with atomic_path(files["summary"]) as tmp, open(tmp, "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=1)
    return summary
