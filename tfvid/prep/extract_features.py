"""Per-frame features of a frozen frame-level network (pipelines/extract_features.py): the first
stage of the DenseImage network and VideoMap, which work on cached per-frame vectors.

    net = load_run_network("runs/tsn_rgb")                 # a trained TSN run's backbone
    net = load_backbone_network("resnet50", "resnet50.weights.h5")   # or an ImageNet backbone
    extract_features(shards, "data/ucf101_feat", net, density=Density("all"), crops=1)

The network and its positions: tfvid.prep.frame_network (FrameNetwork, Density); one record
in and out: tfvid.prep.feature_inputs.

Output: one SequenceExample per video in MediaSequence form (tfvid.data.schema.set_features):
FEATURE/<name>/floats (m rows of D floats), FEATURE/<name>/frame_index and /timestamp (m int64
each), FEATURE/<name>/dimension and the fields of `FrameNetwork.context` + density + crops in the
context; id, labels, frame rate and size of the input context are kept. Frames and flow are
dropped unless keep_frames (then the input record is copied with the features added).

Reliability, as prepare_data / extract_flow: one output shard per input shard (same name),
written under a temporary name and renamed when complete; extract_features-progress.jsonl lists
finished shards with their byte size, so a rerun skips them (and refuses other options:
extract_features-manifest.json holds them, and the shard plan per split that
tfvid.prep.completeness checks before training on the features); a record that does not parse
or a video that cannot be decoded is skipped and listed in extract_features-rejects.tsv (shard,
record number, video id, reason); a truncated or corrupt shard gets no output (reported,
retried by a rerun); a folder lock keeps a second job out.
"""
from __future__ import annotations

import collections
import concurrent.futures as futures
import json
import os
import shutil
import time

from tfvid.atomic import atomic_path
from tfvid.lock import folder_lock
from tfvid.prep.completeness import update_plan
from tfvid.prep.feature_inputs import VideoReject, output_example, prepare_video, video_id
from tfvid.prep.frame_network import CROPS, Density, FrameNetwork
from tfvid.prep.shards import append_progress, load_progress

JOB = "extract_features"
MANIFEST_VERSION = 1


def _ahead(items, fn, depth: int = 2):
    """Yields (item, fn(item)) in order with fn running `depth` items ahead in one thread
    (decoding the next video while the network runs). fn must not raise."""
    with futures.ThreadPoolExecutor(max_workers=1) as pool:
        pending: collections.deque = collections.deque()
        for item in items:
            pending.append((item, pool.submit(fn, item)))
            if len(pending) > depth:
                item0, job = pending.popleft()
                yield item0, job.result()
        while pending:
            item0, job = pending.popleft()
            yield item0, job.result()


def _compression(path: str) -> str:
    """Shards named *.gz are GZIP TFRecords (as build_dataset reads them)."""
    return "GZIP" if path.endswith(".gz") else ""


def _records(path: str):
    """(record number, serialized bytes) of a shard, streamed; DataLossError naming the shard
    and the record where it broke."""
    import tensorflow as tf
    k = 0
    try:
        for record in tf.data.TFRecordDataset(path, compression_type=_compression(path)):
            yield k, record.numpy()
            k += 1
    except tf.errors.DataLossError as e:
        raise tf.errors.DataLossError(
            None, None, f"{path}: corrupt at record {k}: {' '.join(e.message.split())}") \
            from None


def _load_manifest(path: str, options: dict, started: bool, names: list[str]) -> None:
    """Checks the manifest's options when `started` (some shard is finished): ValueError naming
    the options that differ (before any shard is finished the options may change). Then writes
    it with the shard plan updated for `names` (tfvid.prep.completeness.update_plan: what the
    train and evaluate jobs check the feature shards against)."""
    old = {}
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            old = json.load(f)
    if started and old:
        was = old.get("options", {})
        diff = sorted(k for k in set(was) | set(options) if was.get(k) != options.get(k))
        if diff:
            shown = ", ".join(f"{k}: {was.get(k)!r} -> {options.get(k)!r}" for k in diff)
            raise ValueError(f"{os.path.dirname(path)} holds features made with other options "
                             f"({shown}); rerun with the same options to resume, or use "
                             "another output_dir")
    plan = update_plan(old.get("plan") if started else None, names)
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        json.dump({"version": MANIFEST_VERSION, "options": options, "plan": plan}, f, indent=1)


def _check_flow_present(shards, network: FrameNetwork) -> None:
    """A flow network on data without flow: ValueError at once (not one reject per video).
    Looks at the first record that parses; a corrupt shard is left to the per-shard report."""
    import tensorflow as tf
    from google.protobuf.message import DecodeError

    from tfvid.data import schema
    if network.modality != "flow":
        return
    try:
        for _, raw in _records(shards[0]):
            try:
                ex = tf.train.SequenceExample.FromString(raw)
            except DecodeError:
                continue
            lists = ex.feature_lists.feature_list
            if not lists[schema.FLOW_X].feature and len(lists[schema.FRAMES].feature) > 1:
                raise ValueError(f"{shards[0]} holds no optical flow, and the network takes "
                                 "flow: prepare with --flow or run extract_flow first")
            return
    except tf.errors.DataLossError:
        return


def _copy_classes(shards, output_dir: str) -> None:
    src = os.path.join(os.path.dirname(shards[0]), "classes.txt") if shards else ""
    dst = os.path.join(output_dir, "classes.txt")
    if os.path.isfile(src) and not os.path.exists(dst):
        with atomic_path(dst) as tmp:
            shutil.copyfile(src, tmp)


def feature_options(network: FrameNetwork, feature_name: str, density: Density, crops: int,
                    keep_frames: bool) -> dict:
    """What decides the features: the manifest's options (a rerun must match them)."""
    return {"feature_name": feature_name, **network.describe(), "density": str(density),
            "crops": int(crops), "keep_frames": bool(keep_frames)}


def extract_features(shards, output_dir: str, network: FrameNetwork, *,
                     feature_name: str | None = None, density: Density = Density(),
                     crops: int = 1, keep_frames: bool = False, batch_size: int = 64,
                     progress: bool = True) -> dict:
    """Writes the features of every video of `shards` to output_dir/<same shard names>.

    feature_name: default the network's modality. Returns the summary also written to
    output_dir/extract_features-summary.json: videos, frames (feature rows, finished shards
    of earlier runs included), frames_computed / seconds / frames_per_second (this run),
    feature_dim, shards written / skipped / failed, rejects, options, files. Raises ValueError
    (bad options, options that differ from an earlier run in output_dir, output_dir holding
    the inputs, flow network on data without flow) or tfvid.lock.LockedError.
    """
    feature_name = feature_name or network.modality
    if not feature_name or "/" in feature_name:
        raise ValueError(f"bad feature name {feature_name!r}")
    if crops not in CROPS:
        raise ValueError(f"crops must be one of {CROPS}, got {crops}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    shards = [os.path.abspath(p) for p in shards]
    if not shards:
        raise ValueError("no input shards")
    output_dir = os.path.abspath(output_dir)
    if any(os.path.dirname(p) == output_dir for p in shards):
        raise ValueError(f"output_dir {output_dir} holds the input shards; choose another "
                         "folder (feature shards take the input shards' names)")
    names = [os.path.basename(p) for p in shards]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ValueError(f"input shards of the same name in several folders: {twice}")
    options = feature_options(network, feature_name, density, crops, keep_frames)
    os.makedirs(output_dir, exist_ok=True)
    with folder_lock(os.path.join(output_dir, f".{JOB}.lock"), JOB):
        started = bool(load_progress(os.path.join(output_dir, f"{JOB}-progress.jsonl"))) or \
            any(os.path.exists(os.path.join(output_dir, n)) for n in names)
        _load_manifest(os.path.join(output_dir, f"{JOB}-manifest.json"), options, started,
                       names)
        _check_flow_present(shards, network)
        _copy_classes(shards, output_dir)
        return _extract_locked(shards, output_dir, network, options, density=density,
                               crops=crops, keep_frames=keep_frames, batch_size=batch_size,
                               progress=progress)


def _extract_locked(shards, output_dir, network, options, *, density, crops, keep_frames,
                    batch_size, progress) -> dict:
    import tensorflow as tf

    from tfvid.data import schema
    from tfvid.progress import progress_bar
    name = options["feature_name"]
    context = {k: options[k] for k in ("model", "source", "checkpoint", "backbone", "width",
                                       "modality", "new_length", "input_size", "density",
                                       "crops")}
    context["rate"] = density.rate
    start, rejects, failed = time.time(), [], []
    counts = dict(written=0, skipped=0, videos=0, frames=0, computed=0)
    log_path = os.path.join(output_dir, f"{JOB}-progress.jsonl")
    finished = load_progress(log_path)

    def add(info):
        rejects.extend(tuple(r) for r in info["rejects"])
        counts["videos"] += info["videos"]
        counts["frames"] += info["frames"]

    def prepare(item):
        k, raw = item
        try:
            ex = tf.train.SequenceExample.FromString(raw)
        except Exception as e:  # noqa: BLE001 - a protobuf DecodeError: reported, not fatal
            return None, f"record does not parse as a SequenceExample: {type(e).__name__}"
        try:
            return ex, prepare_video(ex, network, density)
        except VideoReject as e:
            return ex, str(e)
        except Exception as e:  # noqa: BLE001 - a bad video must not stop the job
            return ex, " ".join(f"{type(e).__name__}: {e}".split())[:300]

    bar = progress_bar(total=None, unit="frame", desc=JOB, disable=not progress,
                       dynamic_ncols=True)
    try:
        for path in shards:
            shard = os.path.basename(path)
            final = os.path.join(output_dir, shard)
            if shard in finished and os.path.isfile(final) and \
                    finished[shard].get("bytes", os.path.getsize(final)) == \
                    os.path.getsize(final):
                counts["skipped"] += 1
                add(finished[shard])
                continue
            done, shard_rejects = dict(videos=0, frames=0), []
            try:
                with atomic_path(final) as tmp, \
                        tf.io.TFRecordWriter(tmp, _compression(final)) as writer:
                    for (k, _), (ex, video) in _ahead(_records(path), prepare):
                        if isinstance(video, str):
                            vid = video_id(ex) if ex is not None else ""
                            shard_rejects.append((path, k, vid, video))
                            bar.set_postfix(videos=counts["videos"] + done["videos"],
                                            rejects=len(rejects) + len(shard_rejects))
                            continue
                        feats = network.features(video["streams"], video["windows"],
                                                 crops=crops, batch_size=batch_size)
                        out = schema.set_features(
                            output_example(ex, keep_frames), name, feats[video["inverse"]],
                            frame_indices=video["positions"],
                            timestamps_us=video["timestamps"], context=context)
                        writer.write(out.SerializeToString())
                        m = len(video["positions"])
                        done["videos"] += 1
                        done["frames"] += m
                        bar.update(m)
                        bar.set_postfix(videos=counts["videos"] + done["videos"],
                                        rejects=len(rejects) + len(shard_rejects))
            except tf.errors.DataLossError as e:       # nothing of this shard is kept
                failed.append({"shard": path, "error": e.message})
                rejects.append((path, "", "", f"corrupt shard: {e.message}"))
                continue
            info = {"name": shard, "bytes": os.path.getsize(final), **done,
                    "rejects": shard_rejects}
            append_progress(log_path, info)         # after the rename: resumable
            counts["written"] += 1
            counts["computed"] += done["frames"]
            add(info)
    finally:
        bar.close()
    seconds = time.time() - start
    summary = {"feature_name": name, "feature_dim": network.feature_dim,
               "videos": counts["videos"], "frames": counts["frames"],
               "frames_computed": counts["computed"], "seconds": round(seconds, 3),
               "frames_per_second": round(counts["computed"] / seconds, 2) if seconds else 0.0,
               "shards_written": counts["written"], "shards_skipped": counts["skipped"],
               "shards_failed": failed, "options": options, "output_dir": output_dir}
    return _write_report(output_dir, rejects, summary)


def _write_report(output_dir: str, rejects: list, summary: dict) -> dict:
    files = {"rejects": os.path.join(output_dir, f"{JOB}-rejects.tsv"),
             "summary": os.path.join(output_dir, f"{JOB}-summary.json"),
             "manifest": os.path.join(output_dir, f"{JOB}-manifest.json")}
    with atomic_path(files["rejects"]) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.write("shard\trecord\tvideo\treason\n")
        f.writelines("\t".join(" ".join(str(v).split()) for v in r) + "\n" for r in rejects)
    summary = {**summary, "rejects": len(rejects), "files": files}
    with atomic_path(files["summary"]) as tmp, open(tmp, "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=1)
    return summary
