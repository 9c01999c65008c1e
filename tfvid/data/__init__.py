"""tfvid.data: the online input (docs/architecture.md).

    schema        the SequenceExample record format
    positions     the papers' frame-position rules; sampling: the sampler objects over them
    augment       training crops and flips, evaluation views; normalization: per-backbone constants
    modality      how the L frames of a step become channels
    records       file lists, list files, record offsets, frame files
    source        which videos in which order (per-epoch permutations) and per-video seeds
    clips         sampled frames -> clip (per clip) and normalisation (per batch)
    features      cached per-frame features as input
    elements      one source row -> one element {'clip', 'label', 'id', 'valid', 'problem'}
    batching      batches of clips whose T varies by video
    pipeline      build_dataset (source -> element -> batch), preprocess_video
    service       tf.data service (dispatcher, workers, distribute)
    kernels       fused uint8 kernels of the training input

Offline preparation (indexes, decoding, flow, prepare) lives in tfvid.prep, which may import this
package but never the other way round; this package never imports tfvid.models.
"""


def build_dataset(*args, **kwargs):
    """See tfvid.data.pipeline.build_dataset (imported lazily: preparation jobs need no tf.data)."""
    from tfvid.data.pipeline import build_dataset as _build
    return _build(*args, **kwargs)
