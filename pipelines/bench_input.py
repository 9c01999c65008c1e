"""Pieces of the `input-pipeline` benchmark (pipelines/benchmark.py): tf.data variants, the
timer and PyTorch-style per-sample Python loaders.

All variants feed TSN-RGB training: K segments of one frame, a TSN multi-scale crop resized to
S x S, a random flip, normalisation of `backbone`, batches of B clips.

    tfvid layouts      build_dataset over TFRecord shards / a raw-frames .list (the real thing,
                       with the fused kernels of tfvid.data.kernels when they build)
    stock              build_dataset(kernels=False) over the raw frames: stock TF ops only
    bounds             the same file reading, parsing, sampling, gather and decoding of only the
                       sampled frames, no crop/flip/resize/normalise (what a layout can reach)
    stages             read (+ parse) only: TFRecord records, or the K JPEG files of a clip
    python loaders     a torch-DataLoader-like process pool over a Dataset with __getitem__:
                       'frames' reads + cv2.imdecode's the K JPEGs, 'pyav' decodes the mp4 with
                       PyAV at the sampled positions; both crop/resize/flip/normalise with
                       numpy + OpenCV, return (K, 3, S, S) float32 (CHW like torchvision)

This module imports TensorFlow only inside functions: the loader workers are spawned processes
that import it and must start without TensorFlow (as torch DataLoader workers do).
"""
from __future__ import annotations

import os
import sys
import time

import numpy as np


# ---------------------------------------------------------------------------- tf variants
TF_VARIANTS = ("tfrecord", "tfrecord.bound", "tfrecord.parse", "tfrecord.read",
               "frames", "frames.stock", "frames.bound", "frames.read")


def tf_dataset(variant: str, data: dict, *, batch_size: int, num_segments: int,
               input_size: int, backbone: str, seed: int = 0):
    """The tf.data pipeline of one variant (see TF_VARIANTS), batched and prefetched.

    'tfrecord'/'frames': tfvid.data.build_dataset (train mode, TSN sampler, float32
    (B, K, S, S, 3)); '.stock': the same with kernels=False. '.bound': uint8 (B, K, 1, H, W, 3) decoded sampled frames. '.parse':
    the K sampled JPEG strings (B, K, 1) after parsing. '.read': serialized records (B,)
    ('tfrecord') or the K files' bytes (B, K, 1) ('frames'). File order, shuffling,
    interleave and parallelism follow build_dataset.
    """
    import tensorflow as tf
    from tfvid.data import build_dataset, clips, records, schema
    from tfvid.data.sampling import TSNSampler, as_seed
    layout, _, stage = variant.partition(".")
    if variant not in TF_VARIANTS:
        raise ValueError(f"unknown tf variant {variant!r}; known: {TF_VARIANTS}")
    sampler = TSNSampler(num_segments)
    files = data["shards"] if layout == "tfrecord" else data["list"]
    if stage in ("", "stock"):
        return build_dataset(files, sampler=sampler, mode="train", batch_size=batch_size,
                             input_size=input_size, backbone=backbone, seed=seed,
                             kernels=False if stage else None)
    auto = tf.data.AUTOTUNE
    base = as_seed(int(seed))

    def sample(index, num_frames):
        s = tf.random.experimental.stateless_fold_in(base, index)
        s_sample = tf.random.experimental.stateless_split(s, 3)[0]
        return sampler(num_frames, "train", s_sample)

    if layout == "tfrecord":
        paths = list(files)
        ds = tf.data.Dataset.from_tensor_slices(paths).shuffle(len(paths), seed=seed)
        ds = ds.interleave(tf.data.TFRecordDataset, cycle_length=min(len(paths), 4),
                           num_parallel_calls=auto, deterministic=True)
        ds = ds.shuffle(64, seed=seed).repeat().enumerate()

        def load(index, serialized):
            if stage == "read":
                return serialized
            ex = schema.parse_example(serialized)
            encoded = tf.gather(ex["frames"], sample(index, ex["num_frames"]))
            return encoded if stage == "parse" else clips.decode(encoded, 3)
    else:
        dirs, _, counts, _ = records.read_list_file(files)
        ds = tf.data.Dataset.from_tensor_slices(
            {"dir": dirs, "num_frames": tf.constant(counts, tf.int32)})
        ds = ds.shuffle(max(64, len(dirs)), seed=seed).repeat().enumerate()

        def load(index, meta):
            names = records.frame_names(meta["dir"], records.RGB_TEMPLATE,
                                          sample(index, meta["num_frames"]))
            encoded = records.read_files(names)
            return encoded if stage == "read" else clips.decode(encoded, 3)
    ds = ds.map(load, num_parallel_calls=auto, deterministic=True)
    ds = ds.batch(batch_size, drop_remainder=True, num_parallel_calls=auto, deterministic=True)
    return ds.prefetch(auto)


# ------------------------------------------------------------------------------- the timer
_reported: list = []        # full layouts whose kernel status was printed (once per process)


def time_batches(iterator, *, warmup: int, batches: int, batch_size: int) -> dict:
    """Consumes `warmup` then `batches` batches; returns {clips_per_s, seconds, clips,
    cpu_s (CPU seconds of this process in the timed window)}."""
    for _ in range(warmup):
        next(iterator)
    start, cpu = time.perf_counter(), time.process_time()
    for _ in range(batches):
        next(iterator)
    seconds = time.perf_counter() - start
    clips = batches * batch_size
    return {"clips_per_s": clips / seconds, "seconds": seconds, "clips": clips,
            "cpu_s": time.process_time() - cpu}


def kernels_report(variant: str | None = None) -> dict:
    """Whether the fused input kernels run (in `variant`, if given: only the full tfvid
    layouts use them) and which path: {"on": bool, "path": "AVX-512" | "scalar" | None,
    "status": "fused input kernels: on (AVX-512 path)" or "...: off: <why>"}."""
    from tfvid.data import kernels
    if variant is not None and variant.partition(".")[2]:
        why = "stock TF ops" if variant.endswith(".stock") else "not used by this stage"
        return {"on": False, "path": None, "status": f"fused input kernels: off: {why}"}
    info = kernels.info()
    return {k: info[k] for k in ("on", "path", "status")}


def run_tf_variant(variant: str, data: dict, *, warmup: int, batches: int, **kw) -> dict:
    """Times one tf.data variant (a fresh iterator; graph building is part of the warm-up);
    'kernels' in the result says whether the fused kernels ran and which path
    (kernels_report); the first full layout run prints it on stderr."""
    report = kernels_report(variant)
    if not variant.partition(".")[2] and not _reported:
        print(f"bench_input: {report['status']}", file=sys.stderr, flush=True)
        _reported.append(variant)
    ds = tf_dataset(variant, data, **kw)
    iterator = iter(ds)
    try:
        result = time_batches(iterator, warmup=warmup, batches=batches,
                              batch_size=kw["batch_size"])
        result["kernels"] = report
        return result
    finally:
        del iterator



def run_python_variant(kind: str, data: dict, *, warmup: int, batches: int, batch_size: int,
                       num_segments: int, input_size: int, backbone: str, workers: int = 2,
                       seed: int = 0) -> dict:
    """Times a Python loader ('frames' = (b), 'pyav' = (c)); adds the workers' stage seconds
    per clip as 'stages' {name: s/clip}, summed over the timed batches.

    Workers deliver batches in rounds (batch j from worker j % workers, all started together),
    so warm-up and timed counts are rounded up to whole rounds: a window of a partial round
    would count batches whose work was done before the window opened."""
    from tfvid.data import augment, pipeline
    width, height = _frame_size(data)
    pairs = augment.crop_size_pairs(width, height, augment.RGB_SCALES, input_size)
    origins = {p: augment.fixed_crop_origins(width, height, *p) for p in pairs}
    aug = TSNAugment(pairs=pairs, origins=origins, input_size=input_size,
                     norm=augment.normalization_config(backbone, "rgb"))
    if kind == "frames":
        dirs, _, counts, _ = pipeline.read_list_file(data["list"])
        dataset = FramesClipDataset(dirs, counts, num_segments, aug)
    elif kind == "pyav":
        dataset = PyAVClipDataset([p for p, _ in data["videos"]],
                                     [n for _, n in data["videos"]], num_segments, aug)
    else:
        raise ValueError(f"unknown python loader {kind!r}; known: frames, pyav")
    warmup, batches = (-(-n // workers) * workers for n in (max(warmup, 1), batches))
    loader = ProcessLoader(dataset, batch_size, num_workers=workers, seed=seed)
    try:
        iterator = iter(loader)
        for _ in range(warmup):
            next(iterator)
        loader.reset_stage_times()
        result = time_batches(iterator, warmup=0, batches=batches, batch_size=batch_size)
        result["stages"] = {k: v / result["clips"] for k, v in loader.stage_times().items()}
        result["cpu_s"] += loader.worker_cpu_s
        return result
    finally:
        loader.close()


def _frame_size(data: dict) -> tuple[int, int]:
    import cv2
    first = sorted(os.listdir(os.path.join(data["dir"], "prepared", "frames", "bench")))[0]
    img = cv2.imread(os.path.join(data["dir"], "prepared", "frames", "bench", first,
                                  "img_00001.jpg"))
    if img is None:
        raise FileNotFoundError(f"no readable img_00001.jpg under {data['dir']}")
    return int(img.shape[1]), int(img.shape[0])


# -------------------------------------------------------------- PyTorch-style Python loaders
class TSNAugment:
    """TSN's training transforms on K HWC uint8 BGR frames, as PyTorch toolkits write them:
    GroupMultiScaleCrop (one of `pairs`, one of the 13 fixed origins) + bilinear resize to S,
    GroupRandomHorizontalFlip, Stack, ToTorchFormatTensor (HWC -> CHW), GroupNormalize.
    Returns float32 (K, 3, S, S) with tfvid's normalisation `norm` (normalization_config)."""

    def __init__(self, *, pairs, origins, input_size: int, norm: dict):
        self.pairs = [tuple(p) for p in pairs]
        self.origins = {tuple(k): [tuple(o) for o in v] for k, v in origins.items()}
        self.size = int(input_size)
        self.reverse = norm["channel_order"] != "bgr"          # cv2 and PyAV give BGR here
        std = np.asarray(norm["std"], np.float32)
        self.mul = (norm["scale"] / std).reshape(1, 3, 1, 1)
        self.sub = (np.asarray(norm["mean"], np.float32) / std).reshape(1, 3, 1, 1)

    def __call__(self, frames, rng) -> np.ndarray:
        import cv2
        s = self.size
        cw, ch = self.pairs[rng.integers(len(self.pairs))]
        origins = self.origins[(cw, ch)]
        x, y = origins[rng.integers(len(origins))]
        crops = np.empty((len(frames), s, s, 3), np.uint8)
        for k, frame in enumerate(frames):
            patch = frame[y:y + ch, x:x + cw]
            if (cw, ch) == (s, s):
                crops[k] = patch
            else:
                cv2.resize(patch, (s, s), dst=crops[k], interpolation=cv2.INTER_LINEAR)
        if rng.random() < 0.5:
            crops = crops[:, :, ::-1]
        chw = crops.transpose(0, 3, 1, 2)
        chw = np.ascontiguousarray(chw[:, ::-1] if self.reverse else chw)   # uint8 permute
        out = np.empty(chw.shape, np.float32)
        np.multiply(chw, self.mul, out=out)                 # float() * scale / std
        out -= self.sub                                     # - mean / std
        return out


def tsn_train_indices(num_frames: int, num_segments: int, rng) -> np.ndarray:
    """TSN's _sample_indices (new_length 1), 0-based: k*d + U{0..d-1}, d = n // K."""
    d = num_frames // num_segments
    if d > 0:
        return np.arange(num_segments) * d + rng.integers(d, size=num_segments)
    if num_frames > num_segments:
        return np.sort(rng.integers(num_frames, size=num_segments))
    return np.zeros(num_segments, np.int64)


class _ClipDataset:
    """Map-style dataset: __getitem__(i) -> float32 (K, 3, S, S); stage seconds in .times."""
    stage_names: tuple = ()

    def __init__(self, paths, counts, num_segments: int, augment: TSNAugment):
        self.paths, self.counts = list(paths), [int(c) for c in counts]
        self.num_segments, self.augment = int(num_segments), augment
        self.rng = np.random.default_rng(0)
        self.times = dict.fromkeys(self.stage_names + ("augment",), 0.0)

    def __len__(self):
        return len(self.paths)

    def seed(self, seed):
        self.rng = np.random.default_rng(seed)

    def __getitem__(self, index):
        idx = tsn_train_indices(self.counts[index], self.num_segments, self.rng)
        frames = self.load(self.paths[index], idx)
        start = time.perf_counter()
        out = self.augment(frames, self.rng)
        self.times["augment"] += time.perf_counter() - start
        return out


class FramesClipDataset(_ClipDataset):
    """(b) frames as JPEG files (img_00001.jpg..): file read, cv2.imdecode (BGR)."""
    stage_names = ("read", "decode")

    def load(self, folder, indices):
        import cv2
        frames = []
        for i in indices:
            t0 = time.perf_counter()
            with open(os.path.join(folder, f"img_{i + 1:05d}.jpg"), "rb") as f:
                buf = f.read()
            t1 = time.perf_counter()
            frames.append(cv2.imdecode(np.frombuffer(buf, np.uint8), cv2.IMREAD_COLOR))
            self.times["read"] += t1 - t0
            self.times["decode"] += time.perf_counter() - t1
        return frames


class PyAVClipDataset(_ClipDataset):
    """(c) mp4 decoded with PyAV at the sampled positions, as decord does: a keyframe index from
    the demuxed packets, then for each sampled frame (in order) seek to the keyframe at or before
    it unless decoding can go on from the current position, decode up to it, convert only it."""
    stage_names = ("decode", "convert")

    def load(self, path, indices):
        import av
        t0 = time.perf_counter()
        convert = 0.0
        order = np.argsort(indices, kind="stable")
        frames = [None] * len(indices)
        with av.open(path) as container:
            stream = container.streams.video[0]
            stream.codec_context.thread_count = 1        # one core per worker process
            start, tb, rate = stream.start_time or 0, stream.time_base, stream.average_rate

            def index_of(pts):
                return int(round((pts - start) * tb * rate))

            keys = sorted(index_of(p.pts) for p in container.demux(stream)
                          if p.is_keyframe and p.pts is not None)
            decoder, pos, frame = None, -1, None
            for j in order:
                target = int(indices[j])
                key = max([k for k in keys if k <= target] or [0])
                if decoder is None or pos < key:          # cheaper to seek than to go on
                    container.seek(start + int(round(key / (rate * tb))), stream=stream,
                                   backward=True)
                    decoder, pos = container.decode(stream), -1
                while pos < target:
                    frame = next(decoder, None)
                    if frame is None:
                        break
                    pos = index_of(frame.pts)
                if frame is None:
                    raise RuntimeError(f"{path}: no frame {target} (stream ended at {pos})")
                c0 = time.perf_counter()
                frames[j] = frame.to_ndarray(format="bgr24")
                convert += time.perf_counter() - c0
        self.times["decode"] += time.perf_counter() - t0 - convert
        self.times["convert"] += convert
        return frames


def _loader_worker(dataset, shm_name, shape, jobs, results, seed):
    """A DataLoader worker: builds whole batches (collate into shared memory), one core."""
    import traceback
    from multiprocessing import shared_memory

    import cv2
    cv2.setNumThreads(1)
    dataset.seed(seed)
    shm = shared_memory.SharedMemory(name=shm_name)
    slots = np.ndarray(shape, np.float32, buffer=shm.buf)
    try:
        while (job := jobs.get()) is not None:
            job_id, slot, indices = job
            try:
                cpu, before = time.process_time(), dict(dataset.times)
                samples = [dataset[i] for i in indices]
                t0 = time.perf_counter()
                np.stack(samples, out=slots[slot])                  # default_collate
                times = {k: v - before[k] for k, v in dataset.times.items()}
                times["collate"] = time.perf_counter() - t0
                results.put((job_id, times, time.process_time() - cpu, None))
            except Exception:  # reported to the main process, which raises
                results.put((job_id, None, 0.0, traceback.format_exc()))
    finally:
        del slots
        shm.close()


class ProcessLoader:
    """torch.utils.data.DataLoader(dataset, batch_size, shuffle=True, drop_last=True,
    num_workers, prefetch_factor=2) in miniature: batch j goes to worker j % num_workers, which
    collates it into a shared-memory slot; batches come back in order as float32 views
    (B, K, 3, S, S), valid until the next one is requested. Indices: endless random permutations.
    Worker processes are spawned (TensorFlow in this process is not forked)."""

    def __init__(self, dataset, batch_size: int, *, num_workers: int = 2,
                 prefetch_factor: int = 2, seed: int = 0):
        import multiprocessing as mp
        from multiprocessing import shared_memory
        self.dataset, self.batch_size, self.seed = dataset, int(batch_size), seed
        self.in_flight = num_workers * prefetch_factor
        sample = dataset[0]
        self.shape = (self.in_flight + 1, self.batch_size) + sample.shape
        self.shm = shared_memory.SharedMemory(create=True,
                                              size=int(np.prod(self.shape)) * sample.itemsize)
        self.slots = np.ndarray(self.shape, np.float32, buffer=self.shm.buf)
        ctx = mp.get_context("spawn")
        self.results = ctx.Queue()
        self.jobs = [ctx.Queue() for _ in range(num_workers)]
        self.workers = [ctx.Process(target=_loader_worker, daemon=True,
                                    args=(dataset, self.shm.name, self.shape, q, self.results,
                                          seed * 1000 + w)) for w, q in enumerate(self.jobs)]
        for p in self.workers:
            p.start()
        self._times, self._cpu, self.worker_cpu_s = {}, {}, 0.0

    def reset_stage_times(self):
        self._times, self.worker_cpu_s = {}, 0.0

    def stage_times(self) -> dict:
        """Worker seconds per stage over the batches returned since the last reset."""
        return dict(self._times)

    def _indices(self):
        rng = np.random.default_rng(self.seed)
        while True:
            yield from rng.permutation(len(self.dataset))

    def __iter__(self):
        stream, pending, sent = self._indices(), {}, 0

        def send():
            nonlocal sent
            batch = [int(next(stream)) for _ in range(self.batch_size)]
            self.jobs[sent % len(self.jobs)].put((sent, sent % len(self.slots), batch))
            sent += 1

        for _ in range(self.in_flight):
            send()
        job = 0
        while True:
            while job not in pending:
                try:
                    job_id, times, cpu, error = self.results.get(timeout=5)
                except Exception:   # queue.Empty: check that the workers live
                    if not all(p.is_alive() for p in self.workers):
                        raise RuntimeError("a loader worker process died") from None
                    continue
                if error:
                    raise RuntimeError(f"loader worker failed on batch {job_id}:\n{error}")
                pending[job_id] = times
                self._cpu[job_id] = cpu
            self.worker_cpu_s += self._cpu.pop(job)
            for k, v in pending.pop(job).items():
                self._times[k] = self._times.get(k, 0.0) + v
            yield self.slots[job % len(self.slots)]
            send()                                 # the consumer is done with this slot
            job += 1

    def close(self):
        for q in self.jobs:
            q.put(None)
        for p in self.workers:
            p.join(timeout=10)
            if p.is_alive():
                p.terminate()
        del self.slots
        self.shm.close()
        self.shm.unlink()
