"""tfvid.data: dataset indexes, video decoding, flow, sampling, augmentation and the tf.data builder."""


def build_dataset(*args, **kwargs):
    """See tfvid.data.pipeline.build_dataset (imported lazily: preparation jobs need no tf.data)."""
    from tfvid.data.pipeline import build_dataset as _build
    return _build(*args, **kwargs)
