"""tfvid.models: model builders and a registry.

Every builder is ``build_<name>(num_classes, **kwargs) -> keras.Model`` with paper defaults;
``build(name, num_classes, **kwargs)`` dispatches by name. Backbones are imported lazily by the
builders, so importing this package stays cheap.
"""
from .din import build_din
from .dynamic_image import build_dynamic_image_net
from .stnet import build_stnet
from .tsn import build_tsn
from .videomap import build_videomap, videomap_attention

MODELS = {
    "tsn": build_tsn,
    "stnet": build_stnet,
    "dynamic_image": build_dynamic_image_net,
    "din": build_din,
    "videomap": build_videomap,
}


def register_model(name, fn):
    """Adds a builder ``fn(num_classes, **kwargs) -> keras.Model`` under ``name``."""
    if not callable(fn):
        raise TypeError(f"register_model: builder for {name!r} is not callable")
    MODELS[name] = fn
    return fn


def build(name, num_classes, **kwargs):
    """Builds the model registered as ``name`` (see ``MODELS``)."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; known models: {sorted(MODELS)}")
    return MODELS[name](num_classes, **kwargs)


__all__ = ["MODELS", "build", "build_din", "build_dynamic_image_net", "build_stnet", "build_tsn",
           "build_videomap", "register_model", "videomap_attention"]
