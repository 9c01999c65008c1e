"""tfvid.models: model builders, their specs and a registry.

Every builder is ``build_<name>(num_classes, **kwargs) -> keras.Model`` with paper defaults,
registered beside its definition with a `tfvid.models.spec.ModelSpec` (the ``@model_spec``
decorator): what the jobs need to know about it (input kind, streams, samplers, test protocol,
recorded arguments, train flags). ``build(name, num_classes, **kwargs)`` dispatches by name;
``MODELS`` maps names to builders, ``SPECS`` / ``get_spec`` give the specs. Backbones are
imported lazily by the builders, so importing this package stays cheap.
"""
from .spec import MODELS, SPECS, ModelSpec, get_spec, load_plugins, model_spec, register
from .din import build_din
from .dynamic_image import build_dynamic_image_net
from .stnet import build_stnet
from .tsn import build_tsn
from .videomap import build_videomap, videomap_attention


def register_model(name, fn, **spec_fields):
    """Adds a builder ``fn(num_classes, **kwargs) -> keras.Model`` under ``name``, with a
    ModelSpec made of ``spec_fields`` (a name already registered keeps its spec's fields
    unless new ones are given)."""
    if not callable(fn):
        raise TypeError(f"register_model: builder for {name!r} is not callable")
    if name in SPECS and not spec_fields:
        import dataclasses
        register(dataclasses.replace(SPECS[name], builder=fn))
    else:
        spec_fields.setdefault("time_arg", None)
        register(ModelSpec(name=name, builder=fn, **spec_fields))
    return fn


def build(name, num_classes, **kwargs):
    """Builds the model registered as ``name`` (see ``MODELS``)."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; known models: {sorted(MODELS)}")
    return MODELS[name](num_classes, **kwargs)


__all__ = ["MODELS", "ModelSpec", "SPECS", "build", "build_din", "build_dynamic_image_net",
           "build_stnet", "build_tsn", "build_videomap", "get_spec", "load_plugins",
           "model_spec", "register", "register_model", "videomap_attention"]
