"""One source row -> one element {'clip', 'label', 'id', 'valid', 'problem'} (docs/architecture.md).

`ElementReader` holds the per-element settings of build_dataset and turns a row of the source
(tfvid.data.source) into an element:
    frame_record(row)     {'path', 'record', 'serialized', 'epoch'} of a SequenceExample shard
    list_row(row)         {'dir', 'id', 'num_frames', 'label', 'where', 'epoch'} of a list file
    feature_record(row)   cached features (tfvid.data.features), same row as frame_record

Training clips are drawn with `video_seed(seed, id, epoch)` (tfvid.data.source): the element's
position plays no part. Bad data is marked, not raised: valid False and problem
"video <id> (<shard> record <k> | <list> line <k>): <reason>" (an incomplete sampled JPEG: the
clip is zeros and nothing is decoded; a label outside [0, num_classes); a flow count that is not
RGB frames - 1); bad_data='fail' raises tf.errors.InvalidArgumentError with that text instead.
"""
from __future__ import annotations

import dataclasses

import tensorflow as tf

from tfvid.data import schema
from tfvid.data.clips import transform
from tfvid.data.features import load_feature_record
from tfvid.data.records import FLOW_TEMPLATES, RGB_TEMPLATE, frame_names, read_files
from tfvid.data.source import video_seed

BAD_DATA = ("mark", "skip", "fail")


def first_reason(*cases):
    """The reason (string tensor) of the first failing (ok, reason) pair, "" when all pass."""
    out = tf.constant("")
    for ok, reason in reversed(cases):
        out = tf.where(ok, out, reason)
    return out


@dataclasses.dataclass(frozen=True)
class ElementReader:
    sampler: object
    mode: str
    modality: str = "rgb"
    input_size: int = 224
    num_crops: int = 1
    seed: int = 0
    kernels: bool = False
    num_classes: int | None = None
    bad_data: str = "mark"
    augmentation: str = "multiscale_crop_flip"
    feature: str | None = None
    feature_dim: int | None = None
    scale_size: int | None = None

    @property
    def training(self) -> bool:
        return self.mode == "train"

    @property
    def is_flow(self) -> bool:
        return self.modality == "flow" and self.feature is None

    # ------------------------------------------------------------------------ shared parts
    def clip_seed(self, video_id, epoch):
        """The stateless seed of this video's clip (train), else None."""
        return video_seed(self.seed, video_id, epoch) if self.training else None

    def label_check(self, label):
        """(ok, reason) of an int32 label: inside [0, num_classes) when num_classes is given;
        val/test also accept -1 (unlabeled test lists: scored, left out of the metrics)."""
        if self.num_classes is None:
            return tf.constant(True), tf.constant("")
        ok = tf.logical_and(label >= 0, label < self.num_classes)
        if not self.training:
            ok = tf.logical_or(ok, tf.equal(label, schema.NO_LABEL))
        return ok, tf.strings.join(["label ", tf.strings.as_string(label),
                                    f" is outside [0, {self.num_classes})" +
                                    ("" if self.training else " (and not -1 = unlabeled)")])

    def output(self, clip, ok, reason, video_id, where, label):
        problem = tf.where(ok, "", tf.strings.join(["video ", video_id, " (", where, "): ",
                                                    reason]))
        if self.bad_data == "fail":
            check = tf.debugging.Assert(ok, [problem], summarize=1)
            with tf.control_dependencies([check]):
                clip = tf.identity(clip)
        return {"clip": clip, "label": label, "id": video_id, "valid": ok, "problem": problem}

    def _transform(self, fetch, num, video_id, epoch, check):
        return transform(fetch, num, encoded=True, sampler=self.sampler,
                         modality=self.modality, mode=self.mode, input_size=self.input_size,
                         num_crops=self.num_crops, seed=self.clip_seed(video_id, epoch),
                         kernels=self.kernels, check=check, augmentation=self.augmentation,
                         scale_size=self.scale_size)

    @staticmethod
    def _where(row):
        return tf.strings.join([row["path"], " record ", tf.strings.as_string(row["record"])])

    # ---------------------------------------------------------------------------- sources
    def frame_record(self, row):
        """A tfvid SequenceExample (schema.py) -> element."""
        ex = schema.parse_example(row["serialized"], with_flow=self.is_flow)
        label = ex["label"]
        label_ok, label_reason = self.label_check(label)
        if self.is_flow:
            n_flow, n_y = ex["num_flow"], tf.size(ex["flow_y"])
            count_ok = tf.logical_and(tf.equal(n_flow, ex["num_frames"] - 1), n_flow > 0)
            count_ok = tf.logical_and(count_ok, tf.equal(n_y, n_flow))
            count_reason = tf.strings.join([
                "RGB/flow frame-count mismatch: RGB frames ",
                tf.strings.as_string(ex["num_frames"]), ", flow_x ",
                tf.strings.as_string(n_flow), ", flow_y ", tf.strings.as_string(n_y),
                " (flow needs RGB frames - 1)"])
            num = tf.maximum(tf.minimum(n_flow, n_y), 1)
            streams = (ex["flow_x"], ex["flow_y"])
            names = ("flow_x frame ", "flow_y frame ")
        else:
            count_ok, count_reason = tf.constant(True), tf.constant("")
            num, streams, names = ex["num_frames"], (ex["frames"],), ("frame ",)

        def fetch(idx):          # a missing frame reads as "" (not a JPEG): marked, no crash
            return [tf.gather(tf.concat([s, [""]], 0), tf.clip_by_value(idx, 0, tf.size(s)))
                    for s in streams]
        clip, ok, bad_jpeg, stream, frame = self._transform(
            fetch, num, ex["id"], row["epoch"], tf.logical_and(label_ok, count_ok))
        jpeg_reason = tf.strings.join([tf.gather(tf.constant(names), stream),
                                       tf.strings.as_string(frame), " is not a complete JPEG"])
        reason = first_reason((count_ok, count_reason), (label_ok, label_reason),
                              (tf.logical_not(bad_jpeg), jpeg_reason))
        return self.output(clip, ok, reason, ex["id"], self._where(row), label)

    def list_row(self, row):
        """A raw-frames list line (frames read from <dir>/img_%05d.jpg ...) -> element."""
        prefixes = FLOW_TEMPLATES if self.is_flow else (RGB_TEMPLATE,)
        num = row["num_frames"] - 1 if self.is_flow else row["num_frames"]
        label = tf.cast(row["label"], tf.int32)
        label_ok, label_reason = self.label_check(label)
        clip, ok, bad_jpeg, stream, frame = self._transform(
            lambda idx: [read_files(frame_names(row["dir"], p, idx)) for p in prefixes],
            num, row["id"], row["epoch"], label_ok)
        bad_file = frame_names(row["dir"], tf.gather(tf.constant(prefixes), stream), frame)
        jpeg_reason = tf.strings.join(["frame file ", bad_file, " is not a complete JPEG"])
        reason = first_reason((label_ok, label_reason), (tf.logical_not(bad_jpeg), jpeg_reason))
        return self.output(clip, ok, reason, row["id"], row["where"], label)

    def feature_record(self, row):
        """A record of cached features FEATURE/<feature>/floats -> element ((T, D) clip)."""
        clip, ok, reason, video_id, label = load_feature_record(
            row["serialized"], self.feature, self.feature_dim, sampler=self.sampler,
            mode=self.mode, seed=lambda video_id: self.clip_seed(video_id, row["epoch"]),
            label_check=self.label_check)
        return self.output(clip, ok, reason, video_id, self._where(row), label)
