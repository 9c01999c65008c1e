"""Dynamic image networks and the four streams SI, DI, OF, DOF (Bilen et al., TPAMI 2017,
the dynamic image networks paper, docs/dynamic_images.md).

A video is cut into windows of L = 10 frames every 6 frames (MDI, section 4.3; data from
``build_dataset(..., sampler=MDISampler())``). Every window becomes one image for a 2D CNN;
the CNN features of all windows of a video are merged by temporal MAX pooling after the last
residual stage, before global average pooling (section 5.5, fig. 4c; the reference code puts
the max on the last block's output), then dropout and the classifier. The four streams
differ in how a window becomes an image (section 5.9, fig. 5):

    stream  input channels       one image per window                      conv1 from RGB
    si      3L RGB (frame-major) one static frame (first by default)        as is (3 ch)
    di      3L RGB               ARP over the L frames, x 0.1 (section 3.2)  as is (3 ch)
    of      2L flow (x1,y1,...)  the 2L-channel flow stack                  "average" rule
    dof     2L flow              ARP over the L (u, v) frames, x 0.1        "first" rule (2 ch)

Shapes (B videos, W windows, S = input_size, D = backbone features, h = S / 32):

    (B, W, S, S, C*L) -> fold (B*W, S, S, C*L) -> per-window image (B*W, S, S, C')
    -> backbone stages (B*W, h, h, D) -> max over the W windows (B, h, h, D)
    -> global average pool (B, D) -> dropout -> fc -> (B, num_classes) logits

Dynamic maps (section 4.1 and 5.6, Table 4: best before conv3): ``pool_before="res3"`` runs
the stages before res3 on each of the L frames and pools the L feature maps instead of the
pixels (ARP with scale 0.1 followed by ReLU, as the reference):

    (B*W, S, S, C*L) -> (B*W*L, S, S, C) -> stem, res2 -> (B*W, L, h2, h2, D2) -> ARP + ReLU
    -> (B*W, h2, h2, D2) -> res3 .. res5 -> max over windows -> ...

Within-window pooling (``pooling``): "arp" (approximate rank pooling), "pp1" / "pp2"
(parametric pooling, section 5.7: a learned 10x1 temporal fully connected layer, or 10x10,
ReLU, 10x1; followed by ReLU), "mean" / "max" (mean / max image, Table 1 baselines).

Single dynamic image (SDI, section 4.3): one window spanning the whole video. Build with
``window=T, num_windows=1`` and feed T frames spread over the video as one window:
``UniformSampler(num_frames=T)`` clips (B, T, S, S, C) reshaped by
`tfvid.layers.window_pooling.frames_to_window` to (B, 1, S, S, T*C). The MDI sampler
cannot express it (its windows are consecutive frames).

The static stream (SI) of the reference code takes single frames every 6 frames starting at
the first (windows of one frame, stride 6), i.e. the first frame of each MDI window: the
default ``si_frame="first"``. "center" takes the middle frame; "all" runs all L frames through
the CNN and max-pools over the W*L frames (frame order then does not matter, 10x the cost).
"""
from __future__ import annotations

import keras

from tfvid.layers.rank_pooling import ApproximateRankPooling
from tfvid.layers.segments import FoldSegments, UnfoldSegments
from tfvid.layers.window_pooling import (MaxOverWindows, ParametricPooling, SelectFrame,
                                         TemporalReduce)
from tfvid.models.arguments import check_choice
from tfvid.models.spec import model_spec

STREAMS = ("si", "di", "of", "dof")
POOLINGS = ("arp", "pp1", "pp2", "mean", "max")
SI_FRAMES = ("first", "center", "all")
#: Input modality of each stream (what build_dataset must produce).
STREAM_MODALITY = {"si": "rgb", "di": "rgb", "of": "flow", "dof": "flow"}
#: Channels of one frame of each stream's input.
FRAME_CHANNELS = {"rgb": 3, "flow": 2}
#: conv1 adaptation of 3-channel weights (tfvid.models.weights.CONV1_RULES).
CONV1_RULE = {"si": "average", "di": "average", "of": "average", "dof": "first"}
#: Dropout before the classifier: 0.5 RGB, 0.8 flow (reference code, main_train.m).
DEFAULT_DROPOUT = {"si": 0.5, "di": 0.5, "of": 0.8, "dof": 0.8}
DYNAMIC_STREAMS = ("di", "dof")


def stream_modality(stream: str) -> str:
    """'rgb' for si/di, 'flow' for of/dof; ValueError naming the stream otherwise."""
    if stream not in STREAMS:
        raise ValueError(f"unknown dynamic image stream {stream!r}; choose one of {STREAMS}")
    return STREAM_MODALITY[stream]


def input_channels(stream: str, window: int = 10) -> int:
    """C*L of the network input: 3L for si/di (RGB), 2L for of/dof (flow x, y interleaved)."""
    return FRAME_CHANNELS[stream_modality(stream)] * int(window)


def run_config(values: dict) -> dict:
    """The train job's run_config entries of a dynamic image run (the spec's `configure`): the
    stream reaches the builder through model_kwargs; MDI windows, or with sdi_frames = T > 0
    one window of T frames over the whole video (SDI)."""
    stream, frames = values["stream"], int(values.get("sdi_frames") or 0)
    if frames:
        return {"stream": stream, "sampler": {"name": "sdi", "frames": frames},
                "model_kwargs": {"stream": stream, "window": frames, "num_windows": 1}}
    return {"stream": stream, "sampler": "mdi", "model_kwargs": {"stream": stream}}


def check_run(values: dict) -> None:
    """The spec's `check` of the train flags: ValueError naming them."""
    frames = values.get("sdi_frames") or 0
    if frames < 0:
        raise ValueError(f"--sdi_frames must be 0 (MDI) or positive, got {frames}")
    if frames and values.get("stream") not in DYNAMIC_STREAMS:
        raise ValueError(f"--sdi_frames={frames} needs --model=dynamic_image with --stream=di "
                         f"or dof (got --stream={values.get('stream')})")


def _window_pool(pooling, *, scale, after_stage, window, name):
    """The layer pooling axis 1 of (N, L, ...) away, with the activation that follows it:
    none for ARP / mean / max on the input pixels, ReLU inside the network and for PP."""
    relu = "relu" if after_stage else None
    if pooling == "arp":
        return ApproximateRankPooling(axis=1, scale=scale, activation=relu, name=name)
    if pooling in ("pp1", "pp2"):
        return ParametricPooling(hidden=window if pooling == "pp2" else 0, axis=1,
                                 activation="relu", name=name)
    return TemporalReduce(mode=pooling, axis=1, name=name)


@model_spec(
    "dynamic_image", modalities=("rgb", "flow"), streams=STREAM_MODALITY, time_arg=None,
    default_time=None, sampler="mdi",
    test_segments=None, test_crops=1,   # docs/dynamic_images.md: MDI windows over the whole
    #                                     video, one centre crop
    recorded_args=("backbone", "width", "input_size", "dropout", "pooling", "pool_before"),
    configure=run_config, check=check_run,
    flags={"stream": ("enum:si,di,of,dof", "di", "Stream of --model=dynamic_image: si (static "
                      "RGB frames), di (dynamic images), of (optical flow), dof (dynamic optical "
                      "flow). It implies --modality (si/di: rgb, of/dof: flow) and the MDI "
                      "window sampler."),
           "sdi_frames": ("integer", 0, "Streams di/dof: 0 = multiple dynamic images (MDI: "
                          "windows of 10 frames every 6, max-pooled); T > 0 = a single dynamic "
                          "image (SDI) per video from T frames spread over the whole video."),
           "pooling": ("string", None, "Temporal pooling of a dynamic image window: arp "
                       "(approximate rank pooling), pp1, pp2 (parametric), mean or max."),
           "pool_before": ("string", None, "'input' (dynamic images) or a backbone stage such "
                           "as res3 (dynamic maps).")})
def build_dynamic_image_net(num_classes, *, stream="di", backbone="resnext50", input_size=224,
                            window=10, num_windows=None, pooling="arp", pool_before="input",
                            weights=None, width=1.0, dropout=None, arp_scale=0.1,
                            si_frame="first", synchronized=None):
    """Builds one stream of the four-stream dynamic image network as a functional keras.Model.

    Input: (B, W, S, S, C*L) float windows, channels last: W = ``num_windows`` (None: any
    number, the MDI default), S = ``input_size``, L = ``window`` frames per window stacked
    frame-major, C = 3 for "si"/"di" (RGB, normalised as the backbone expects) and C = 2 for
    "of"/"dof" (flow x, y interleaved, the 8-bit values centred at 128 by build_dataset's flow
    normalisation: minus 128, divided by 128 for torch-style backbones such as ResNeXt). The
    layout of ``build_dataset(..., sampler=MDISampler(window=L),
    modality=stream_modality(stream))``. Output: (B, num_classes) logits (no softmax).

    Args:
      num_classes: number of action classes.
      stream: "si" (static frames), "di" (dynamic images), "of" (optical flow stacks) or
        "dof" (dynamic optical flow); see the module docstring.
      backbone: a name of tfvid.models.backbones.BACKBONES (the paper: ResNeXt-50 32x4d).
      input_size: spatial side S (224).
      window: L frames per window (10; section 5.5, Table 3).
      num_windows: W, or None for a variable number of windows per video.
      pooling: how the L frames of a window become one image or map (di/dof only): "arp",
        "pp1", "pp2" (needs the fixed L), "mean", "max".
      pool_before: "input" (dynamic image: pooling before conv1) or the name of a backbone
        stage after the first (e.g. "res3": dynamic maps, the paper's best) for di/dof.
      weights: None, "imagenet" or a backbone weights file; conv1 is adapted from RGB by the
        stream's rule (of: "average" over 2L channels, dof: "first" two slices).
      width: backbone width multiplier (small widths for tests).
      dropout: rate before the classifier; default 0.5 (si, di), 0.8 (of, dof).
      arp_scale: scale of the dynamic image / map (0.1 in the reference ResNeXt setting).
      si_frame: "first", "center" or "all" frames of each window for the si stream.
      synchronized: BatchNormalization(synchronized=...) (None: the backbone module default).
    """
    from tfvid.models.backbones import BACKBONES, backbone_stages, stage_names
    from tfvid.models.resnet import synchronized_batchnorm
    from tfvid.models.weights import load_backbone_weights

    modality = stream_modality(stream)
    check_choice("build_dynamic_image_net", "backbone", backbone, BACKBONES)
    check_choice("build_dynamic_image_net", "pooling", pooling, POOLINGS)
    check_choice("build_dynamic_image_net", "si_frame", si_frame, SI_FRAMES)
    names = stage_names(backbone)
    if pool_before != "input" and pool_before not in names[1:]:
        raise ValueError(f"build_dynamic_image_net: pool_before={pool_before!r} must be "
                         f"'input' or a stage of {backbone} after the first: {names[1:]}")
    if pool_before != "input" and stream not in DYNAMIC_STREAMS:
        raise ValueError(f"build_dynamic_image_net: pool_before={pool_before!r} (dynamic maps) "
                         f"applies to the dynamic streams {DYNAMIC_STREAMS}, not {stream!r}")
    window = int(window)
    if window < 1:
        raise ValueError(f"build_dynamic_image_net: window must be >= 1, got {window}")
    if num_windows is not None and int(num_windows) < 1:
        raise ValueError(f"build_dynamic_image_net: num_windows must be positive or None, "
                         f"got {num_windows}")
    if input_size is None or int(input_size) < 32:
        raise ValueError(f"build_dynamic_image_net: input_size must be an integer >= 32, got "
                         f"{input_size!r}")
    rate = DEFAULT_DROPOUT[stream] if dropout is None else float(dropout)
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"build_dynamic_image_net: dropout must be in [0, 1), got {rate}")
    sync = synchronized_batchnorm() if synchronized is None else bool(synchronized)
    size, frame_c = int(input_size), FRAME_CHANNELS[modality]
    time = None if num_windows is None else int(num_windows)

    inputs = keras.Input((time, size, size, frame_c * window), name="windows")
    x = FoldSegments(name="fold_windows")(inputs)                  # (B*W, S, S, C*L)
    if stream != "of":   # frames on an axis of their own: (B*W, L, S, S, C)
        x = keras.layers.Reshape((size, size, window, frame_c), name="split_frames")(x)
        x = keras.layers.Permute((3, 1, 2, 4), name="frames_first")(x)
    if stream == "si":
        if si_frame == "all":
            x = FoldSegments(name="fold_frames")(x)                 # (B*W*L, S, S, 3)
        else:
            x = SelectFrame(0 if si_frame == "first" else window // 2, name="static_frame")(x)
    elif stream in DYNAMIC_STREAMS and pool_before == "input":
        x = _window_pool(pooling, scale=arp_scale, after_stage=False, window=window,
                         name=f"{pooling}_input")(x)                # (B*W, S, S, C)
    elif stream in DYNAMIC_STREAMS:
        frames = x
        x = FoldSegments(name="fold_frames")(x)                     # (B*W*L, S, S, C)

    for stage, fn in backbone_stages(backbone, width=width, synchronized=sync):
        if stage == pool_before:                                    # dynamic map
            x = UnfoldSegments(name=f"unfold_frames_{stage}")([x, frames])  # (B*W, L, h, w, D)
            x = _window_pool(pooling, scale=arp_scale, after_stage=True, window=window,
                             name=f"{pooling}_{stage}")(x)          # (B*W, h, w, D)
        x = fn(x)
    x = MaxOverWindows(name="max_over_windows")([x, inputs])        # (B, h, w, D)
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)     # (B, D)
    x = keras.layers.Dropout(rate, name="dropout")(x)
    # The reference initialises the new classifier with N(0, 0.01) and zero bias.
    outputs = keras.layers.Dense(num_classes, name="fc",
                                 kernel_initializer=keras.initializers.RandomNormal(stddev=0.01),
                                 bias_initializer="zeros")(x)
    suffix = "" if pool_before == "input" else f"_{pool_before}"
    model = keras.Model(inputs, outputs, name=f"dynamic_image_{stream}{suffix}_{backbone}")
    if weights is not None:
        load_backbone_weights(model, backbone, weights, width=width,
                              conv1_rule=CONV1_RULE[stream], strict=False)
    return model


__all__ = ["build_dynamic_image_net", "input_channels", "stream_modality", "STREAMS",
           "POOLINGS", "STREAM_MODALITY"]
