"""Offline preparation: everything that runs once, before training, and writes files.

Video indexes (UCF101/HMDB51/Kinetics/Jester/folder/csv), decoding with PyAV or frame folders,
optical flow, the prepare and extract_flow jobs' workers, per-frame feature extraction, the
synthetic dataset and exact rank pooling. Modules here may import the online input package
(tfvid.data: the record schema, sampling) and the models; tfvid.data never imports this package.
See docs/architecture.md.
"""
