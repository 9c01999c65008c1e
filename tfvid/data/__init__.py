"""tfvid.data: the online input: record schema, sampling, augmentation, modalities, the tf.data
builder and the fused kernels. Offline preparation (indexes, decoding, flow, prepare) lives in
tfvid.prep, which may import this package but never the other way round."""


def build_dataset(*args, **kwargs):
    """See tfvid.data.pipeline.build_dataset (imported lazily: preparation jobs need no tf.data)."""
    from tfvid.data.pipeline import build_dataset as _build
    return _build(*args, **kwargs)
