"""What the in-graph protocol signatures of an export do, as data: the signature and input
names, one InputProtocol per raw input (rgb frames, flow fields) and the Protocol (inputs and
views) that tfvid.export.signatures turns into graph functions and tfvid.export.warmup into
warmup requests. The sidecar records `Protocol.describe()` under "serving".
"""
from __future__ import annotations

import dataclasses
from typing import Any

#: Signature names.
FRAMES_SIGNATURE = "serving_default"
ENCODED_SIGNATURE = "encoded_frames"
RECORD_SIGNATURE = "sequence_example"
CLIP_SIGNATURE = "clip"
#: Outputs of every signature.
OUTPUTS = ("logits", "probabilities", "top_k_indices", "top_k_classes")
TOP_K = 5
#: Input name of the serialized records of `sequence_example`.
RECORDS_INPUT = "examples"
#: Raw input names (serving_default, encoded_frames) of each raw modality.
RAW_INPUTS = ("rgb", "flow")
#: Evaluation views per clip by default (pipelines.evaluate's default: 10 crops).
DEFAULT_NUM_CROPS = 10


def top_k(num_classes: int) -> int:
    return max(1, min(TOP_K, int(num_classes)))


@dataclasses.dataclass(frozen=True)
class InputProtocol:
    """How one raw input (``rgb`` frames or ``flow`` fields) becomes the model input `model_key`.

    modality: the run's modality ("rgb", "rgbdiff" -> raw "rgb"; "flow" -> raw "flow").
    sampling: the test-mode sampler config (tfvid.data.sampling.get_sampler(**sampling)).
    frame_size: (w, h) of the stored training frames, or None; short_side: instead of it.
    """
    model_key: str
    modality: str
    sampling: dict
    input_size: int
    backbone: str
    frame_size: tuple | None = None
    short_side: int | None = None
    #: short side the frames are scaled to before the views (None: input_size * 256 // 224)
    scale_size: int | None = None

    @property
    def raw(self) -> str:
        return "flow" if self.modality == "flow" else "rgb"

    @property
    def channels(self) -> int:
        """Channels of one raw frame: 3 (RGB) or 2 (flow x, y)."""
        return 2 if self.raw == "flow" else 3

    @property
    def sampler(self):
        from tfvid.data import sampling
        return sampling.get_sampler(**self.sampling)

    def describe(self) -> dict:
        return {"model_input": self.model_key, "modality": self.modality,
                "sampling": dict(self.sampling), "input_size": self.input_size,
                "backbone": self.backbone,
                "frame_size": None if self.frame_size is None else list(self.frame_size),
                "short_side": self.short_side, "scale_size": self.scale_size}


@dataclasses.dataclass(frozen=True)
class Protocol:
    """The in-graph test protocol of an export: one InputProtocol per raw input, the views."""
    inputs: tuple
    num_crops: int = DEFAULT_NUM_CROPS
    named_model_inputs: bool = False     # the model takes a dict {model_key: clip}

    def __post_init__(self):
        if self.num_crops not in (1, 3, 10):
            raise ValueError(f"num_crops must be 1, 3 or 10, got {self.num_crops}")
        raws = [p.raw for p in self.inputs]
        if not raws or len(set(raws)) != len(raws):
            raise ValueError(f"one protocol per raw input (rgb, flow), got {raws}")

    def by_raw(self) -> dict:
        return {p.raw: p for p in self.inputs}

    def describe(self) -> dict:
        return {"num_crops": self.num_crops,
                "inputs": {p.raw: p.describe() for p in self.inputs},
                "frame_rule": FRAME_RULE}


FRAME_RULE = ("serving_default / encoded_frames: the T frames of a row are the whole video; the "
              "test sampler of serving.inputs.<input>.sampling picks its positions among those "
              "T frames (e.g. TSN: test_segments snippets with the TSN test rule), only those "
              "are decoded, resized to decoding frame_size / short_side, cut into num_crops "
              "views and normalised; the view logits are averaged. All rows of one request "
              "share T. flow: T flow fields (n - 1 for n frames), 8-bit x/y as prepare_data "
              "stores them.")


def protocol_input(model_key: str, sidecar_part: dict, sampling: dict,
                   scale_size: int | None = None) -> InputProtocol:
    """An InputProtocol from an export sidecar's "preprocessing" and "decoding" and the
    test-protocol sampler config `sampling`; scale_size: the short side before the views."""
    pre = sidecar_part["preprocessing"]
    dec = sidecar_part.get("decoding") or {}
    size = dec.get("frame_size")
    return InputProtocol(model_key=model_key, modality=pre["modality"], sampling=dict(sampling),
                         input_size=int(pre["input_size"]), backbone=pre["backbone"],
                         frame_size=None if not size else (int(size[0]), int(size[1])),
                         short_side=dec.get("short_side"),
                         scale_size=None if scale_size is None else int(scale_size))


def signature_description(specs: dict, num_classes: int) -> dict:
    """{"inputs": {name: {dtype, shape}}, "outputs": {...}} of one signature for the sidecar."""
    k = top_k(num_classes)
    return {
        "inputs": {n: {"dtype": s.dtype.name, "shape": s.shape.as_list()}
                   for n, s in specs.items()},
        "outputs": {"logits": {"dtype": "float32", "shape": [None, num_classes]},
                    "probabilities": {"dtype": "float32", "shape": [None, num_classes]},
                    "top_k_indices": {"dtype": "int32", "shape": [None, k]},
                    "top_k_classes": {"dtype": "string", "shape": [None, k]}},
    }


def class_names_or_default(names: Any, num_classes: int) -> list[str]:
    if names and len(names) == num_classes:
        return [str(n) for n in names]
    return [f"class_{i}" for i in range(num_classes)]
