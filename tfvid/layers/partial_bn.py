"""Partial batch normalisation (TSN, the TSN paper, docs/tsn.md section 3.4).

"After initialization with pretrained models, we choose to freeze the mean and variance
parameters of all Batch Normalization layers except the first one." The first BN follows the
first convolution, whose input distribution changes most with a new modality (flow, RGB
difference), so it keeps learning gamma/beta and updating its moving statistics.

In Keras 3 a BatchNormalization layer with ``trainable=False`` runs in inference mode (it
normalises with its moving statistics and does not update them) and its gamma/beta get no
gradients, which is exactly what "frozen" means here.

Note: setting ``model.trainable = True`` afterwards unfreezes every layer again; call
``apply_partial_bn`` after any such change (e.g. after a warm-up with a frozen backbone).
"""
from typing import List, NamedTuple

import keras


class PartialBNResult(NamedTuple):
    """Layer names (or paths "outer/inner" for nested models) of the BN layers."""
    frozen: List[str]
    learning: List[str]


def _iter_layers(layer, prefix=""):
    """Yields (path, layer) for every sub-layer in model layer order, depth first."""
    if isinstance(layer, keras.Model) or hasattr(layer, "layers"):
        children = list(layer.layers)
    else:
        children = list(layer._flatten_layers(include_self=False, recursive=False))
    for child in children:
        path = f"{prefix}{child.name}"
        yield path, child
        if not isinstance(child, keras.layers.BatchNormalization):
            yield from _iter_layers(child, prefix=path + "/")


def batch_norm_layers(model):
    """Lists (path, layer) of every BatchNormalization layer of ``model`` in layer order,
    recursing into nested models and composite layers (each layer once)."""
    seen, found = set(), []
    for path, layer in _iter_layers(model):
        if isinstance(layer, keras.layers.BatchNormalization) and id(layer) not in seen:
            seen.add(id(layer))
            found.append((path, layer))
    return found


def apply_partial_bn(model):
    """Freezes every BatchNormalization layer of ``model`` except the first one.

    The first BN (in model layer order, recursing into nested models such as a backbone)
    stays trainable: its gamma/beta learn and its moving mean/variance update in training.
    All others get ``trainable=False``: inference-mode normalisation, no statistics updates,
    no gradients. Other layers are left untouched. Works in place.

    Returns:
      PartialBNResult(frozen=[paths...], learning=[path]); both empty if the model has no BN.
    """
    bns = batch_norm_layers(model)
    learning, frozen = [], []
    for i, (path, layer) in enumerate(bns):
        if i == 0:
            layer.trainable = True
            learning.append(path)
        else:
            layer.trainable = False
            frozen.append(path)
    return PartialBNResult(frozen=frozen, learning=learning)
