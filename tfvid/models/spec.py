"""Model specs: everything the jobs need to know about a model, registered beside its builder.

A new model is one module that defines a builder and registers a `ModelSpec` for it (plus a
preset); the jobs (pipelines.train, pipelines.evaluate) and tfvid.train.run_dir read the spec and
hold no per-model code:

    @model_spec("toy", sampler="uniform", time_arg="num_frames", default_time=8,
                recorded_args=("input_size", "num_frames"), test_crops=1)
    def build_toy(num_classes, *, num_frames=8, input_size=32, weights=None): ...

The builder is called as builder(num_classes, weights=..., **recorded keywords) by the train
job (weights: its --weights) and with weights=None when a run is rebuilt (tfvid.train.run_dir).

Fields (all but name and builder have defaults):
  input_kind     'frames' (decoded video, (B, T, S, S, C)) or 'features' (cached features
                 FEATURE/<feature>/floats, (B, T, D)); `input_kind_of(cfg)` gives the run's,
                 'features' for a model with `feature_input` whose run has no backbone.
  feature_input  the model also trains on cached features when --backbone=none (DIN, VideoMap).
  modalities     modalities its frames input takes ('rgb', 'flow', 'rgbdiff').
  streams        stream -> modality (dynamic_image: si/di -> rgb, of/dof -> flow): --stream
                 implies --modality.
  time_arg       the builder's time-length keyword ('num_segments', 'num_frames') or None; the
                 run's --num_segments (T) is passed to it.
  default_time   the paper's training T (TSN 3, StNet 7, DIN 8, VideoMap 256; None: the
                 sampler decides, e.g. MDI windows).
  sampler        the training sampler's name in tfvid.data.sampling.SAMPLERS (the same sampler
                 serves val and test: it samples by mode); `make_sampler(cfg, mode, n)` builds it.
  augmentation   the training augmentation build_dataset applies by default (the paper's):
                 'multiscale_crop_flip' (TSN's corner + scale jitter crops and a flip) or
                 'random_crop_flip' (a plain random input_size crop of the stored frame and a
                 flip: StNet's official reader); train's --augmentation overrides it.
  preprocessing  the input normalisation (descriptive: 'backbone' = the backbone's).
  test_segments  the test protocol's time steps (TSN / StNet 25 snippets); None: the sampler's
                 own test sampling (MDI windows over the whole video, DIN's T frames).
  test_crops     views per time step of the test protocol (TSN 10; StNet, dynamic images 1).
  test_input_size  spatial side of the test views when it differs from the training input
                 size (StNet: a 256 x 256 centre crop of the 340 x 256 stored frame, taken
                 without rescaling, fed at 256 to the weights trained at 224); None: the
                 run's input_size. Stated for the paper's training side PAPER_INPUT_SIZE
                 (224): a run trained at S tests at test_input_size * S // 224
                 (`test_input_size_of`), i.e. for StNet the short side S * 256 // 224 that
                 TSN's short-side rule scales the frames to, so the view is always the whole
                 short side, centred.
  variable_time  bool or cfg -> bool: whether evaluation may rebuild the model with a variable
                 time axis (TSN not with the 'weighted' consensus).
  export_inputs  names of the inputs its exports take.
  recorded_args  builder keywords a run records in run_config.json and passes back to the
                 builder (None values leave the builder's default).
  flags          extra train flags: name -> (kind, default, help) with kind an absl DEFINE_
                 suffix ('string', 'integer', 'float', 'bool', 'enum:<a>,<b>'); the train job
                 defines the flags of every registered spec.
  configure      values -> dict merged into the run config (model_kwargs, sampler, ...).
  check          values -> None, raising ValueError for a bad combination of flags.

Plugins: the jobs import the modules named in the TFVID_PLUGINS environment variable
(comma-separated module names, `load_plugins()`) before they read the specs, so a model defined
outside tfvid registers itself with no edit in pipelines/.
"""
from __future__ import annotations

import dataclasses
import importlib
import os
from typing import Any, Callable, Mapping

from tfvid.models.snippets import DEFAULT_NEW_LENGTH

INPUT_KINDS = ("frames", "features")
TIME_ARGS = ("num_segments", "num_frames", None)
PLUGINS_ENV = "TFVID_PLUGINS"
#: backbone values that mean "no backbone" (cached features input).
NO_BACKBONE = (None, "", "none", "None")
#: The training input side that ModelSpec.test_input_size is stated for (the papers' 224).
PAPER_INPUT_SIZE = 224
#: Backbone whose normalisation a run without a recorded backbone takes (the train job's
#: --backbone default is recorded in every run since the spec redesign).
FALLBACK_BACKBONE = "resnet50"

#: name -> ModelSpec
SPECS: dict[str, "ModelSpec"] = {}
#: name -> builder (the registry tfvid.models.MODELS; a builder set here directly is used with
#: its name's spec, or a generic one).
MODELS: dict[str, Callable] = {}


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    name: str
    builder: Callable
    input_kind: str = "frames"
    feature_input: bool = False
    modalities: tuple = ("rgb", "flow", "rgbdiff")
    streams: Mapping[str, str] = dataclasses.field(default_factory=dict)
    time_arg: str | None = "num_segments"
    default_time: int | None = None
    sampler: str = "tsn"
    augmentation: str = "multiscale_crop_flip"
    preprocessing: str = "backbone"
    test_segments: int | None = None
    test_crops: int = 10
    test_input_size: int | None = None
    variable_time: Any = True
    export_inputs: tuple = ("clip",)
    recorded_args: tuple = ()
    flags: Mapping[str, tuple] = dataclasses.field(default_factory=dict)
    configure: Callable[[dict], dict] | None = None
    check: Callable[[dict], None] | None = None

    def __post_init__(self):
        if not self.name or not isinstance(self.name, str):
            raise ValueError(f"ModelSpec: name must be a non-empty string, got {self.name!r}")
        if not callable(self.builder):
            raise TypeError(f"ModelSpec {self.name!r}: builder is not callable")
        if self.input_kind not in INPUT_KINDS:
            raise ValueError(f"ModelSpec {self.name!r}: input_kind must be one of "
                             f"{INPUT_KINDS}, got {self.input_kind!r}")
        if self.time_arg not in TIME_ARGS:
            raise ValueError(f"ModelSpec {self.name!r}: time_arg must be one of {TIME_ARGS}, "
                             f"got {self.time_arg!r}")
        bad = sorted(set(self.streams.values()) - set(self.modalities))
        if bad:
            raise ValueError(f"ModelSpec {self.name!r}: streams use modalities {bad} that are "
                             f"not in modalities {self.modalities}")
        if self.test_crops not in (1, 3, 10):
            raise ValueError(f"ModelSpec {self.name!r}: test_crops must be 1, 3 or 10")
        if self.streams and "stream" not in self.flags:
            raise ValueError(f"ModelSpec {self.name!r}: a model with streams defines the "
                             "'stream' flag (flags={'stream': ...})")
        for flag, value in self.flags.items():
            if not (isinstance(value, tuple) and len(value) == 3):
                raise ValueError(f"ModelSpec {self.name!r}: flag {flag!r} must be "
                                 "(kind, default, help)")

    # ------------------------------------------------------------------ per run
    def input_kind_of(self, cfg: dict) -> str:
        """'features' when the model takes cached features and the run has no backbone."""
        if self.feature_input and cfg.get("backbone", "") in NO_BACKBONE:
            return "features"
        return self.input_kind

    def is_variable_time(self, cfg: dict) -> bool:
        v = self.variable_time
        return bool(v(cfg) if callable(v) else v) and self.time_arg is not None

    def test_protocol(self, cfg: dict) -> tuple[int | None, int]:
        """(test segments or None, crops) of the paper's test protocol for this run; cached
        features have one view."""
        crops = 1 if self.input_kind_of(cfg) == "features" else self.test_crops
        return self.test_segments, crops

    def test_input_size_of(self, cfg: dict, override: int | None = None) -> int | None:
        """Spatial side S of the run's test views: `override` (evaluate / export
        --input_size), else test_input_size scaled to the run's training side
        (test_input_size * S_train // PAPER_INPUT_SIZE: StNet trained at 224 -> 256, at 32
        -> 36), else the run's input_size. None for a run on cached features (no pixels)."""
        if self.input_kind_of(cfg) == "features":
            return None
        if override:
            return int(override)
        size = int(cfg.get("input_size") or PAPER_INPUT_SIZE)
        if self.test_input_size is None:
            return size
        return int(self.test_input_size) * size // PAPER_INPUT_SIZE

    def normalization_backbone(self, cfg: dict, kwargs: dict | None = None) -> str | None:
        """The backbone whose input normalisation the run's frames get (preprocessing
        'backbone'): the builder's backbone keyword, else the run's --backbone, else
        FALLBACK_BACKBONE; None for a run on cached features (features are not normalised)."""
        if self.input_kind_of(cfg) == "features":
            return None
        kwargs = self.builder_kwargs(cfg) if kwargs is None else kwargs
        for value in (kwargs.get("backbone"), cfg.get("backbone")):
            if value not in NO_BACKBONE:
                return str(value)
        return FALLBACK_BACKBONE

    def stream_modality(self, stream: str) -> str | None:
        """The modality of `stream` (e.g. dynamic_image 'of' -> 'flow'); None when the model
        has no such stream."""
        return self.streams.get(stream)

    def builder_kwargs(self, cfg: dict) -> dict:
        """run_config 'model_kwargs', then each recorded arg of run_config that is not None;
        the run's --num_segments goes to time_arg."""
        kwargs = dict(cfg.get("model_kwargs") or {})
        for key in self.recorded_args:
            if cfg.get(key) is not None:
                kwargs.setdefault(key, cfg[key])
        if self.time_arg and cfg.get("num_segments") is not None:
            kwargs.setdefault(self.time_arg, cfg["num_segments"])
        if "backbone" in kwargs and kwargs["backbone"] in NO_BACKBONE:
            kwargs["backbone"] = None
        kwargs.pop("weights", None)
        return kwargs

    def make_sampler(self, cfg: dict):
        """The run's training sampler: run_config 'sampler' (a config dict or a name), else
        this spec's, with its fields taken from run_config values (--num_segments is T)."""
        from tfvid.data import sampling
        recorded = cfg.get("sampler")
        if isinstance(recorded, dict):
            return sampling.get_sampler(**recorded)
        name = recorded or self.sampler
        fields = {f.name for f in dataclasses.fields(sampling.SAMPLERS[name])}
        kw = {k: cfg[k] for k in fields if cfg.get(k) is not None}
        if "num_frames" in fields and "num_frames" not in kw and cfg.get("num_segments"):
            kw["num_frames"] = cfg["num_segments"]
        if "new_length" in fields and "new_length" not in kw:
            kw["new_length"] = DEFAULT_NEW_LENGTH[cfg.get("modality", "rgb")]
        return sampling.get_sampler(name, **kw)


def flag_kind(kind: str) -> tuple[str, dict]:
    """'enum:a,b' -> ('enum', {'enum_values': ['a', 'b']}); other kinds as they are."""
    if kind.startswith("enum:"):
        return "enum", {"enum_values": kind[5:].split(",")}
    return kind, {}


def register(spec: ModelSpec) -> ModelSpec:
    """Registers `spec` (replacing a spec of the same name) and its builder in MODELS."""
    if not isinstance(spec, ModelSpec):
        raise TypeError(f"register: expected a ModelSpec, got {type(spec).__name__}")
    for other in SPECS.values():
        for flag, value in spec.flags.items():
            if other.name != spec.name and flag in other.flags and \
                    other.flags[flag][:2] != value[:2]:
                raise ValueError(f"model {spec.name!r}: flag --{flag} {value[:2]} differs from "
                                 f"model {other.name!r}'s {other.flags[flag][:2]}")
    SPECS[spec.name] = spec
    MODELS[spec.name] = spec.builder
    return spec


def model_spec(name: str, **fields):
    """Decorator registering the decorated builder under `name` with ModelSpec `fields`."""
    def wrap(builder):
        register(ModelSpec(name=name, builder=builder, **fields))
        return builder
    return wrap


def get_spec(name: str) -> ModelSpec:
    """The spec of model `name` (ValueError naming the known models when there is none). A
    builder put in MODELS by hand gets its spec with that builder, or a generic frames spec."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; known models: {sorted(MODELS)}")
    spec = SPECS.get(name)
    builder = MODELS[name]
    if spec is None:
        return ModelSpec(name=name, builder=builder, time_arg=None)
    if spec.builder is not builder:
        return dataclasses.replace(spec, builder=builder)
    return spec


def all_specs() -> list[ModelSpec]:
    """Specs of every model in MODELS, by name."""
    return [get_spec(n) for n in sorted(MODELS)]


def model_flags() -> dict[str, tuple]:
    """name -> (kind, default, help) of the extra flags of every spec, with the models using
    each (help text names them)."""
    out: dict[str, tuple] = {}
    users: dict[str, list[str]] = {}
    for spec in all_specs():
        for flag, value in spec.flags.items():
            out.setdefault(flag, value)
            users.setdefault(flag, []).append(spec.name)
    return {f: (k, d, f"{h} (--model={'/'.join(users[f])})") for f, (k, d, h) in out.items()}


def load_plugins(names: str | None = None) -> list[str]:
    """Imports the modules named in `names` (default: the TFVID_PLUGINS environment variable,
    comma-separated): they register their model specs. Returns the module names."""
    text = os.environ.get(PLUGINS_ENV, "") if names is None else names
    mods = [m.strip() for m in text.split(",") if m.strip()]
    for mod in mods:
        importlib.import_module(mod)
    return mods


__all__ = ["FALLBACK_BACKBONE", "INPUT_KINDS", "MODELS", "ModelSpec", "NO_BACKBONE",
           "PAPER_INPUT_SIZE", "PLUGINS_ENV", "SPECS",
           "all_specs", "flag_kind", "get_spec", "load_plugins", "model_flags", "model_spec",
           "register"]
