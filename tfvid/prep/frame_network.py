"""The frame-level network of extract_features and where it looks: a frozen backbone mapping
one frame (or one flow stack) to a feature vector, and the positions of a video it is applied at.

    net = load_run_network("runs/tsn_rgb")                 # a trained TSN run's backbone
    net = load_backbone_network("resnet50", "resnet50.weights.h5")   # or an ImageNet backbone
    feats = net.features(streams, window_indices(Density("all").positions(n), net.new_length, n))

The network is the backbone of a TSN run (rebuilt from run_config.json, the checkpoint
restored; its global-average-pool output, before dropout and the classifier: 1024-d for
BN-Inception, 2048-d for ResNet-50) or an ImageNet backbone from a weights file. What it sees
at a position p follows the run: rgb one frame (L = 1), flow the stack of L = 5 flow frames
centred on flow frame p (p-2..p+2, the window shifted to stay inside the n-1 flow frames near
the ends; 2L = 10 channels), rgbdiff the L = 6 frames centred on p. Frames are cropped as the
evaluation input is (tfvid.data.augment: GroupScale to input_size*256/224, then the centre crop,
or 3 / 10 crops whose pooled features are averaged) and normalised for the backbone
(augment.normalize). The positions (`Density`): every frame, a fixed rate from the stored
frame rate, or N positions spread uniformly (TSN's test rule). See docs/din.md.
"""
from __future__ import annotations

import dataclasses
import os

import numpy as np

CROPS = (1, 3, 10)
DENSITY_KINDS = ("all", "fps", "num_frames")


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
    kwargs = {"modality": cfg.get("modality", "rgb"), "backbone": cfg.get("backbone"),
              **run_dir.builder_kwargs(cfg)}
    if not kwargs["backbone"]:
        raise ValueError(f"{model_dir}: run_config.json records no backbone")
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
