"""tfvid.eval: metrics, test-time protocols (multi-view, M-TWI), stream fusion, plots.

metrics, fusion and plots need only numpy (and matplotlib for the PNG); protocol imports
TensorFlow, so its names are loaded on first use.
"""
from tfvid.eval.fusion import fuse
from tfvid.eval.metrics import (Scores, confusion_matrix, format_summary, load_scores,
                                mean_class_accuracy, per_class_accuracy, save_scores, summarize,
                                topk_accuracy)

_PROTOCOL = ("predict_views", "evaluate", "mtwi_scores")


def __getattr__(name):
    if name in _PROTOCOL:
        from tfvid.eval import protocol
        return getattr(protocol, name)
    raise AttributeError(f"module 'tfvid.eval' has no attribute {name!r}")


__all__ = ["Scores", "confusion_matrix", "format_summary", "load_scores", "mean_class_accuracy",
           "per_class_accuracy", "save_scores", "summarize", "topk_accuracy", "fuse", *_PROTOCOL]
