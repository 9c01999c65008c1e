"""Offline preparation: everything that runs once, before training, and writes files.

    indexes/            dataset indexes, one module per format (UCF101, HMDB51, Kinetics, SSv2,
                        Jester / SSv1, folder / csv) behind load_index
    video, frames       decoding a video file (PyAV) into a Video; VideoError, output sizes
    frame_folders, jpeg a folder of frame images as a video; JPEG coding
    video_writer        write_video (the synthetic set, tests)
    flow                optical flow and its JPEG quantisation
    prepare             the prepare_data job's core (workers: prepare_worker; manifest, retried
                        rejects and reports: prepare_manifest; shard names and progress log:
                        shards); prepare_dataset runs it over the splits of an index
    completeness        are prepared or feature shards complete (train / evaluate check)
    extract_flow        flow added to prepared shards
    extract_features    per-frame features (network and positions: frame_network; one record
                        in and out: feature_inputs)
    synthetic           the synthetic dataset; rank_pooling, dynamic_images: exact rank pooling
                        and dynamic-image PNGs

Modules here may import the online input package (tfvid.data: the record schema, sampling) and
the models; tfvid.data never imports this package. See docs/architecture.md.
"""
