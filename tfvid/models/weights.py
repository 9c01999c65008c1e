"""Backbone weight loading by layer name, with conv1 input-channel adaptation.

Sources (``weights`` argument of `load_backbone_weights` / `build_backbone`):

* ``"imagenet"``: Keras-applications ImageNet weights (ResNet-50/101 only), downloaded by
  ``keras.applications.ResNet50/101(weights="imagenet", include_top=False)``. Offline, pass a
  local file instead (the error message says which).
* a path to a ``.weights.h5`` file saved (``save_weights``) from a Keras-applications
  ResNet50/101 (with or without top), or from a tfvid backbone of the same name and width
  (any input channel count, pooled or not). Keras's own legacy ``.h5`` downloads also work for
  the Keras-applications ResNets. The kind is detected by loading the file into candidate
  models (a tfvid twin with the target's input channels, one with 3 channels, then the
  Keras-applications models): Keras weight files are positional, so the candidate must also
  hold exactly as many arrays as the file.

The loaded source model is then copied into the target layer by layer name (tfvid ResNets use
the Keras-applications layer names, so the mapping is the identity). Conv biases may differ
between the two (Keras-applications ResNets have them; ``conv_bias=False`` tfvid ResNets, as
StNet's PaddlePaddle ResNet-50, do not); every such conv feeds its BatchNormalization
(``conv1_conv -> conv1_bn``, ``conv2_block1_1_conv -> conv2_block1_1_bn``), so:

* biased source -> bias-free target: the bias is folded into the BN moving mean,
  ``moving_mean - bias``; BN(conv(x) + b) with mean m equals BN(conv(x)) with mean m - b
  exactly in inference (and in training the batch mean absorbs b anyway);
* bias-free source -> biased target: the target biases are set to zero (also exact).

conv1 is adapted when the target has C != 3 input channels (TSN cross-modality initialisation
and friends):

    CONV1_RULES["average"]  mean over the 3 RGB slices, replicated C times (TSN flow / RGB diff)
    CONV1_RULES["stnet"]    that mean divided by N = C / 3, replicated C = 3N times (StNet)
    CONV1_RULES["first"]    the first C <= 3 input slices (dynamic optical flow keeps 2)
"""
from __future__ import annotations

import os
import warnings
from typing import Callable

import keras
import numpy as np

from tfvid.models.architectures import backbone_network, conv1_layer_name

ConvRule = Callable[[np.ndarray, int], np.ndarray]

KERAS_APPLICATIONS = {"resnet50": "ResNet50", "resnet101": "ResNet101"}
KERAS_WEIGHTS_URL = "https://storage.googleapis.com/tensorflow/keras-applications/resnet/"


# --------------------------------------------------------------------------- conv1 rules
def _rule_average(kernel: np.ndarray, in_channels: int) -> np.ndarray:
    mean = kernel.mean(axis=2, keepdims=True)
    return np.repeat(mean, in_channels, axis=2)


def _rule_stnet(kernel: np.ndarray, in_channels: int) -> np.ndarray:
    if in_channels % 3:
        raise ValueError(f"conv1 rule 'stnet' needs 3N input channels, got {in_channels}")
    mean = kernel.mean(axis=2, keepdims=True) / (in_channels // 3)
    return np.repeat(mean, in_channels, axis=2)


def _rule_first(kernel: np.ndarray, in_channels: int) -> np.ndarray:
    if in_channels > kernel.shape[2]:
        raise ValueError(f"conv1 rule 'first' keeps at most {kernel.shape[2]} input slices, "
                         f"got {in_channels} input channels")
    return kernel[:, :, :in_channels, :].copy()


CONV1_RULES: dict[str, ConvRule] = {
    "average": _rule_average,
    "stnet": _rule_stnet,
    "first": _rule_first,
}


def register_conv1_rule(name: str, fn: ConvRule, *, overwrite: bool = False) -> None:
    """Add a rule ``fn(kernel (kh, kw, 3, out), in_channels) -> (kh, kw, in_channels, out)``."""
    if name in CONV1_RULES and not overwrite:
        raise ValueError(f"conv1 rule {name!r} already exists (pass overwrite=True)")
    CONV1_RULES[name] = fn


def adapt_conv1_kernel(kernel, in_channels: int, rule: str = "average") -> np.ndarray:
    """Adapt a (kh, kw, 3, out) conv1 kernel to ``in_channels`` input channels.

    Returns a (kh, kw, in_channels, out) float array; the kernel is returned unchanged (copied)
    when it already has ``in_channels`` input channels. Rules: see `CONV1_RULES`.
    """
    kernel = np.asarray(kernel)
    if kernel.ndim != 4:
        raise ValueError(f"conv1 kernel must be (kh, kw, in, out), got shape {kernel.shape}")
    if rule not in CONV1_RULES:
        raise ValueError(f"unknown conv1 rule {rule!r}; known: {sorted(CONV1_RULES)}")
    if in_channels < 1:
        raise ValueError(f"in_channels must be >= 1, got {in_channels}")
    if kernel.shape[2] == in_channels:
        return kernel.copy()
    out = np.asarray(CONV1_RULES[rule](kernel, int(in_channels)), dtype=kernel.dtype)
    expected = kernel.shape[:2] + (in_channels, kernel.shape[3])
    if out.shape != expected:
        raise ValueError(f"conv1 rule {rule!r} returned shape {out.shape}, expected {expected}")
    return out


# --------------------------------------------------------------------------- sources
def _weighted_layers(model):
    """Layers that own weights, descending into nested models and wrappers (TimeDistributed)."""
    for layer in model.layers:
        yield from _expand(layer)


def _expand(layer):
    if isinstance(layer, keras.layers.Wrapper):
        yield from _expand(layer.layer)
    elif isinstance(layer, keras.Model):
        yield from _weighted_layers(layer)
    elif layer.weights:
        yield layer


def _count_file_arrays(path: str):
    """Number of arrays in a Keras 3 ``.weights.h5`` file (None for other formats)."""
    if not str(path).endswith(".weights.h5"):
        return None
    try:
        import h5py
        count = []
        with h5py.File(path, "r") as f:
            f.visititems(lambda _, obj: count.append(1) if isinstance(obj, h5py.Dataset) else None)
        return len(count)
    except Exception:  # unreadable: let keras report the problem
        return None


def _file_hints(path: str) -> dict:
    """Cheap hints from a Keras 3 ``.weights.h5`` file: conv1 input channels, conv1 bias and a
    Dense top.

    Keras stores layers positionally as ``layers/<class>_<k>``; ``layers/conv2d`` is the first
    Conv2D, which is conv1 in every backbone here. Only used to try the likeliest candidate
    first, never to decide a match.
    """
    hints = {"conv1_channels": None, "conv1_bias": None, "has_dense": False}
    if not str(path).endswith(".weights.h5"):
        return hints
    try:
        import h5py
        with h5py.File(path, "r") as f:
            kernel = f.get("layers/conv2d/vars/0")
            if kernel is not None and kernel.ndim == 4:
                hints["conv1_channels"] = int(kernel.shape[2])
                hints["conv1_bias"] = "layers/conv2d/vars/1" in f
            hints["has_dense"] = "layers/dense" in f
    except Exception:
        pass
    return hints


def _keras_application(name: str, **kwargs):
    return getattr(keras.applications, KERAS_APPLICATIONS[name])(**kwargs)


def _imagenet_source(name: str):
    if name not in KERAS_APPLICATIONS:
        raise ValueError(
            f"no ImageNet weights ship with Keras for backbone {name!r} (only "
            f"{sorted(KERAS_APPLICATIONS)}); pass weights=<path to a .weights.h5 file saved from "
            f"a tfvid {name} backbone> instead, e.g. one converted from the PyTorch checkpoint")
    cls = KERAS_APPLICATIONS[name]
    file = f"{name}_weights_tf_dim_ordering_tf_kernels_notop.h5"
    try:
        return _keras_application(name, weights="imagenet", include_top=False,
                                  input_shape=(None, None, 3))
    except Exception as err:  # offline, proxy, corrupt cache ...
        raise RuntimeError(
            f"could not load Keras ImageNet weights for {name}: keras.applications.{cls} "
            f"failed to download {file} ({type(err).__name__}: {err}). Without internet, "
            f"download {KERAS_WEIGHTS_URL}{file} elsewhere (or run "
            f"keras.applications.{cls}(weights='imagenet').save_weights('{name}.weights.h5')) "
            f"and pass the local path as weights=... (--weights=... in the jobs)") from err


def _file_source(name: str, path: str, *, width: float, in_channels: int,
                 conv_bias: bool | None = None):
    """Load ``path`` into the first candidate model that matches it; returns (model, label).

    Candidates are tfvid twins (input channels from the file, the target's, 3; for ResNet-family
    backbones with and without conv biases, the file's / ``conv_bias`` layout first) and the
    Keras-applications models.
    """
    if not os.path.exists(path):
        raise FileNotFoundError(f"weights file {path!r} does not exist")
    hints = _file_hints(path)
    channels = [c for c in (hints["conv1_channels"], in_channels, 3) if c]
    biases = [None]
    if name != "bninception":
        biases = [b for b in (hints["conv1_bias"], conv_bias) if b is not None] + [True, False]
        biases = list(dict.fromkeys(biases))
    candidates = []
    for c in dict.fromkeys(channels):
        for b in biases:
            layout = "" if b is None else (", conv biases" if b else ", no conv biases")
            candidates.append((f"tfvid {name} backbone (width {width}, {c} input channels"
                               f"{layout})",
                               lambda c=c, b=b: backbone_network(
                                   name, input_shape=(None, None, c), width=width,
                                   pooling=None, conv_bias=b)))
    if name in KERAS_APPLICATIONS:
        cls = KERAS_APPLICATIONS[name]
        keras_candidates = [
            (f"keras.applications.{cls}(include_top=False)",
             lambda: _keras_application(name, weights=None, include_top=False,
                                        input_shape=(None, None, 3))),
            (f"keras.applications.{cls}(include_top=True)",
             lambda: _keras_application(name, weights=None, include_top=True))]
        if hints["has_dense"]:
            candidates = keras_candidates[::-1] + candidates
        else:
            candidates += keras_candidates
    n_arrays = _count_file_arrays(path)
    tried = []
    for label, factory in candidates:
        model = factory()
        if n_arrays is not None and n_arrays != len(model.weights):
            tried.append(f"{label}: {len(model.weights)} arrays, the file has {n_arrays}")
            continue
        try:
            with warnings.catch_warnings():  # Keras warns about every failed candidate
                warnings.simplefilter("ignore")
                model.load_weights(path)
        except Exception as err:
            lines = [line.strip() for line in str(err).splitlines() if line.strip()]
            tried.append(f"{label}: " + " ".join(lines[:2])[:300])
            continue
        return model, f"{path} (as {label})"
    raise ValueError(f"weights file {path!r} matches no known layout for backbone {name!r}:\n  "
                     + "\n  ".join(tried))


# --------------------------------------------------------------------------- copying
def _has_bias_option(layer) -> bool:
    """A kernel layer whose bias is optional (Conv*, Dense): weights ``[kernel, (bias)]``."""
    return hasattr(layer, "use_bias") and hasattr(layer, "kernel")


def _following_batchnorm(conv, layers_by_name):
    """The BatchNormalization fed directly by ``conv``: ``<x>_conv -> <x>_bn`` (Keras ResNet
    names) or ``<name> -> <name>_bn``; checked against the model graph when it is known."""
    names = [conv.name + "_bn"]
    if conv.name.endswith("_conv"):
        names.insert(0, conv.name[:-len("_conv")] + "_bn")
    for bn_name in names:
        bn = layers_by_name.get(bn_name)
        if not isinstance(bn, keras.layers.BatchNormalization):
            continue
        parents = [p.operation for node in getattr(bn, "_inbound_nodes", [])
                   for p in node.parent_nodes]
        if parents and any(op is not conv for op in parents):
            continue  # same name pattern, but the BN does not read this conv
        return bn
    return None


def _moving_mean_index(bn) -> int:
    for i, w in enumerate(bn.weights):
        if w is bn.moving_mean:
            return i
    raise ValueError(f"BatchNormalization {bn.name!r} has no moving_mean variable")


def copy_weights_by_name(source, target, *, conv1: str | None = None,
                         conv1_rule: str = "average", strict: bool = True,
                         source_label: str = "the source model") -> list[str]:
    """Copy weights of same-named layers from ``source`` into ``target``.

    The kernel of layer ``conv1`` is adapted with ``conv1_rule`` when its input-channel count
    differs (3 in the source). ``strict``: every weighted layer of ``target`` must be found.
    A conv with a bias in ``source`` but none in ``target`` has its bias folded into the BN it
    feeds (``<x>_conv -> <x>_bn``): target ``moving_mean = source moving_mean - bias``, the same
    outputs in inference. The reverse (no bias in ``source``) sets the target bias to zero.
    Returns the names of the layers written. Raises ValueError naming the layer and both
    shapes on any mismatch, or a biased conv that feeds no BatchNormalization.
    """
    available = {layer.name: layer for layer in _weighted_layers(source)}
    targets = list(_weighted_layers(target))
    by_name = {layer.name: layer for layer in targets}
    planned, folds, missing = {}, {}, []
    for layer in targets:
        src = available.get(layer.name)
        if src is None:
            missing.append(layer.name)
            continue
        values = src.get_weights()
        if (_has_bias_option(layer) and _has_bias_option(src)
                and bool(src.use_bias) != bool(layer.use_bias)):
            if src.use_bias:                              # fold the bias into the next BN
                bn = _following_batchnorm(layer, by_name)
                if bn is None:
                    raise ValueError(
                        f"layer {layer.name!r} has a bias in {source_label} but none in the "
                        f"model, and it feeds no BatchNormalization (expected "
                        f"{layer.name.rsplit('_conv', 1)[0]}_bn) that could absorb it")
                folds[bn.name] = values[1]
                values = values[:1]
            else:                                         # bias-free source: zero bias
                values = [values[0], np.zeros(tuple(layer.bias.shape), values[0].dtype)]
        if len(values) != len(layer.weights):
            raise ValueError(f"layer {layer.name!r} has {len(layer.weights)} weights in the model "
                             f"but {len(values)} in {source_label}")
        if layer.name == conv1 and values[0].ndim == 4:
            want = layer.weights[0].shape[2]
            if values[0].shape[2] != want:
                if values[0].shape[2] != 3:
                    raise ValueError(f"layer {layer.name!r}: cannot adapt a {values[0].shape} "
                                     f"kernel from {source_label} to {want} input channels "
                                     f"(rules start from 3-channel weights)")
                values[0] = adapt_conv1_kernel(values[0], want, conv1_rule)
        for w, v in zip(layer.weights, values):
            if tuple(w.shape) != tuple(v.shape):
                raise ValueError(f"layer {layer.name!r}: weight {w.name!r} has shape "
                                 f"{tuple(w.shape)} in the model but {tuple(v.shape)} in "
                                 f"{source_label}")
        planned[layer.name] = values
    for bn_name, bias in folds.items():
        bn = by_name[bn_name]
        values = planned.setdefault(bn_name, bn.get_weights())  # BN not in source: its own
        i = _moving_mean_index(bn)
        if values[i].shape != bias.shape:
            raise ValueError(f"cannot fold a bias of shape {bias.shape} from {source_label} "
                             f"into {bn_name!r} moving_mean of shape {values[i].shape}")
        values[i] = (values[i] - bias).astype(values[i].dtype)
    if not planned:
        raise ValueError(f"no layer of model {target.name!r} was found in {source_label}")
    if strict and missing:
        raise ValueError(f"{len(missing)} layer(s) of model {target.name!r} are missing from "
                         f"{source_label}: {missing[:8]}{' ...' if len(missing) > 8 else ''}")
    loaded = []
    for layer in targets:
        if layer.name in planned:
            layer.set_weights(planned[layer.name])
            if layer.name in available:
                loaded.append(layer.name)
    return loaded


def load_backbone_weights(model, name: str, weights, *, width: float = 1.0,
                          conv1_rule: str = "average", strict: bool = True) -> list[str]:
    """Load ``weights`` (None, "imagenet" or a file path) into ``model``'s backbone layers.

    ``model`` is a `build_backbone` model (or any model holding the backbone's layer names;
    pass ``strict=False`` when it also has layers of its own, e.g. StNet's temporal blocks).
    ``width`` must be the backbone's width. conv1 is adapted to the model's input channels
    with ``conv1_rule``. The model's convs may have biases or not whatever the source has
    (folded into / zeroed around the BNs, see `copy_weights_by_name`). Returns the names of the
    layers written (empty for None).
    """
    if weights is None:
        return []
    conv1 = conv1_layer_name(name)
    in_channels, conv_bias = 3, None
    for layer in _weighted_layers(model):
        if layer.name == conv1:
            in_channels = int(layer.weights[0].shape[2])
            conv_bias = bool(getattr(layer, "use_bias", True))
    if isinstance(weights, str) and weights == "imagenet":
        source, label = _imagenet_source(name), f"Keras ImageNet weights for {name}"
    elif isinstance(weights, (str, os.PathLike)):
        source, label = _file_source(name, os.fspath(weights), width=width,
                                     in_channels=in_channels, conv_bias=conv_bias)
    else:
        raise TypeError(f"weights must be None, 'imagenet' or a file path, got {weights!r}")
    return copy_weights_by_name(source, model, conv1=conv1, conv1_rule=conv1_rule,
                                strict=strict, source_label=label)
