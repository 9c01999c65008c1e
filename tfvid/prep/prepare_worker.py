"""Per-video work of the preparation job, run in worker processes (tfvid.prep.prepare).

Decode (PyAV) -> resize -> JPEG-encode frames -> optional flow -> optional frame folder.
A source that is a folder of frame images (Jester, Something-Something v1) keeps its JPEG
bytes unchanged when no resize is needed (tfvid.prep.video.read_frame_folder_jpegs).
This module imports PyAV and OpenCV but not TensorFlow, so spawned workers start quickly; the
main process builds the SequenceExamples and writes the shards.

Worker processes die with the main process: each sets PR_SET_PDEATHSIG (Linux) and runs a
watchdog thread that exits when its parent is gone, so a `kill -9` of prepare_data leaves no
orphan workers. A worker that dies (out of memory or a crash in a decoder) does not stop the
run: OrderedResults finds the video it was processing (each worker notes its current video in
a small state file), runs that video once more alone in a fresh process to confirm, rejects it
as "worker process died (signal N) while decoding" and goes on with a new pool.

Write errors of a frame folder (disk full, quota, read-only file system) are not rejects: the
temporary folder is removed and OrderedResults raises WriteError naming the folder, so the run
stops with finished shards and folders kept.

Test hook: the environment variable TFVID_PREPARE_TEST_KILL (comma-separated video ids) makes
a worker process (never the main process) SIGKILL itself when it starts one of those videos;
tests use it to reproduce a worker death on a given video.
"""
from __future__ import annotations

import collections
import concurrent.futures as futures
import ctypes
import errno as errnolib
import multiprocessing
import os
import shutil
import signal
import tempfile
import threading
import time

TEST_KILL_ENV = "TFVID_PREPARE_TEST_KILL"


class WriteError(OSError):
    """Writing an output (shard, frame folder) failed; the message names the path.
    WriteError(errno, message): str() is the message alone."""

    def __str__(self) -> str:
        return str(self.strerror)


def write_error(path: str, e: OSError, what: str) -> WriteError:
    """A WriteError naming `path` ("no space left on device" for ENOSPC/EDQUOT)."""
    code = getattr(e, "errno", None)
    if code in (errnolib.ENOSPC, getattr(errnolib, "EDQUOT", -1)):
        reason = "no space left on device" + (" (disk quota exceeded)"
                                              if code != errnolib.ENOSPC else "")
    else:
        reason = getattr(e, "strerror", None) or str(e)
    return WriteError(code or errnolib.EIO,
                      f"cannot write {what} {path}: {reason} [{type(e).__name__}: {e}]; its "
                      "temporary file was removed and finished outputs are kept: free space "
                      "(or fix the folder) and rerun to resume")


def _clean(reason: str) -> str:
    return " ".join(str(reason).split())


def count_frame_files(folder: str) -> int:
    """Number of img_*.jpg RGB frames in a finished frame folder."""
    return sum(1 for f in os.listdir(folder) if f.startswith("img_") and f.endswith(".jpg"))


def write_frame_folder(final: str, frames_root: str, video_id: str, rgb, flow_x, flow_y) -> None:
    """Writes img_00001.jpg.. and flow_x/flow_y_00001.jpg.. into a temp folder, then renames it.

    Raises WriteError naming `final` when a write fails (the temp folder is removed first).
    """
    tmp = os.path.join(frames_root, f".tmp-{os.getpid()}-{video_id.replace('/', '__')}")
    try:
        shutil.rmtree(tmp, ignore_errors=True)
        os.makedirs(tmp)
        for prefix, items in (("img", rgb), ("flow_x", flow_x or []), ("flow_y", flow_y or [])):
            for k, data in enumerate(items, 1):
                with open(os.path.join(tmp, f"{prefix}_{k:05d}.jpg"), "wb") as f:
                    f.write(data)
        os.makedirs(os.path.dirname(final), exist_ok=True)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise write_error(final, e, "frame folder") from e
    try:
        os.rename(tmp, final)
    except OSError:  # finished meanwhile by another run: keep the existing folder
        shutil.rmtree(tmp, ignore_errors=True)
        if not os.path.isdir(final):
            raise


def process_video(task: dict) -> dict:
    """Decodes one video and encodes its frames (and flow); writes its frame folder if asked.

    task: {video_id, path, want_example, frames_dir (None = no folder), frames_root, options
    {frame_size, short_side, fps, flow, flow_bound, jpeg_quality, frame_folder_fps}}; a path
    that is a folder is read as a folder of frame images at frame_folder_fps (default 12). Returns {video_id, path,
    num_frames, and with want_example: frames, flow_x, flow_y (JPEG lists), height, width,
    frame_rate, timestamps; partial: note when fewer frames than the container declares were
    decoded} or {video_id, path, reject: reason} or, when writing the frame folder failed,
    {video_id, path, fatal: message naming the folder, errno}. Never raises.
    """
    from tfvid.prep import flow as flowlib
    from tfvid.prep import video as videolib
    o = task["options"]
    out = {"video_id": task["video_id"], "path": task["path"]}
    size = tuple(o["frame_size"]) if o["frame_size"] else None
    try:
        partial = None
        if os.path.isdir(task["path"]):  # a folder of frame images (Jester, SSv1)
            clip = videolib.read_frame_folder_jpegs(
                task["path"], frame_size=size, short_side=o["short_side"], fps=o["fps"],
                frame_rate=o.get("frame_folder_fps") or videolib.FRAME_FOLDER_FPS,
                jpeg_quality=o["jpeg_quality"], want_frames=o["flow"] != "none")
            rgb, decoded, n = clip.jpegs, clip.frames, clip.num_frames
            height, width, rate, stamps = clip.height, clip.width, clip.frame_rate, \
                clip.timestamps_us
        else:
            v = videolib.read_video(task["path"], frame_size=size,
                                    short_side=o["short_side"], fps=o["fps"])
            n, decoded, partial = v.num_frames, v.frames, v.partial
            if n == 0:
                return {**out, "reject": "zero frames"}
            rgb = videolib.encode_jpegs(v.frames, quality=o["jpeg_quality"])
            height, width = int(v.frames.shape[1]), int(v.frames.shape[2])
            rate, stamps = v.frame_rate, v.timestamps_us
        fx = fy = None
        if o["flow"] != "none":
            if n < 2:
                return {**out, "reject": "only 1 frame: optical flow needs at least 2"}
            fx, fy = flowlib.encode_flow_jpegs(flowlib.compute_flow(decoded, o["flow"]),
                                               bound=o["flow_bound"])
            if not len(fx) == len(fy) == n - 1:
                return {**out, "reject": f"RGB/flow frame-count mismatch: {n} RGB frames need "
                                         f"{n - 1} flow frames, got x={len(fx)} y={len(fy)}"}
        if len(rgb) != n:
            return {**out, "reject": f"encoded {len(rgb)} JPEGs for {n} decoded frames"}
        if task["frames_dir"]:
            write_frame_folder(task["frames_dir"], task["frames_root"], task["video_id"],
                                rgb, fx, fy)
        out["num_frames"] = n
        if partial:
            out["partial"] = partial
        if task["want_example"]:
            out.update(frames=rgb, flow_x=fx, flow_y=fy, height=int(height), width=int(width),
                       frame_rate=float(rate), timestamps=[int(t) for t in stamps])
        return out
    except WriteError as e:
        return {**out, "fatal": str(e), "errno": e.errno}
    except videolib.VideoError as e:
        return {**out, "reject": _clean(e.reason)}
    except Exception as e:  # a bad video must not stop the dataset; the reason is reported
        return {**out, "reject": _clean(f"{type(e).__name__}: {e}")}


# ---------------------------------------------------------------- worker processes

def _watch_parent(parent_pid: int) -> None:
    while True:
        time.sleep(0.5)
        if os.getppid() != parent_pid:
            os._exit(1)


def _worker_init(parent_pid: int, state_dir: str | None) -> None:
    """Makes this worker die with its parent; remembers where to note the current video."""
    global _STATE_DIR
    _STATE_DIR = state_dir
    try:  # Linux: the kernel sends SIGKILL when the parent exits (kill -9 included)
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG = 1
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)
    threading.Thread(target=_watch_parent, args=(parent_pid,), daemon=True).start()


_STATE_DIR: str | None = None


def _run_task(task: dict) -> dict:
    """process_video in a worker: notes the current video id, applies the test hook."""
    state = os.path.join(_STATE_DIR, str(os.getpid())) if _STATE_DIR else None
    if state:
        with open(state, "w", encoding="utf-8") as f:
            f.write(task["video_id"])
    kill = os.environ.get(TEST_KILL_ENV)
    if kill and task["video_id"] in kill.split(",") and \
            multiprocessing.parent_process() is not None:
        os.kill(os.getpid(), signal.SIGKILL)
    result = process_video(task)
    if state:
        open(state, "w").close()
    return result


def _isolated_main(conn, parent_pid: int, task: dict) -> None:
    _worker_init(parent_pid, None)
    conn.send(_run_task(task))
    conn.close()


def death_reason(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        try:
            name = f" {signal.Signals(-exitcode).name}"
        except ValueError:
            name = ""
        return f"worker process died (signal {-exitcode}{name}) while decoding"
    return f"worker process died (exit code {exitcode}) while decoding"


def run_isolated(task: dict) -> dict:
    """Runs one task in a fresh worker process; a death becomes a reject naming the signal."""
    ctx = multiprocessing.get_context("spawn")
    recv, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_isolated_main, args=(send, os.getpid(), task), daemon=True)
    proc.start()
    send.close()
    try:
        result = recv.recv()
    except EOFError:
        result = None
    proc.join()
    recv.close()
    if result is None:
        tmp = os.path.join(task.get("frames_root") or "",
                           f".tmp-{proc.pid}-{task['video_id'].replace('/', '__')}")
        if task.get("frames_root"):
            shutil.rmtree(tmp, ignore_errors=True)
        return {"video_id": task["video_id"], "path": task["path"],
                "reject": death_reason(proc.exitcode)}
    return result


class OrderedResults:
    """Iterator of process_video results in task order; at most 4*workers tasks in flight.

    The worker processes start at construction, so they warm up while the caller imports
    TensorFlow. workers=1 runs inline (a crash in a decoder then ends the run). When a worker
    dies, the video it was processing is rerun alone (run_isolated) and rejected if it kills
    that process too; the other unfinished tasks go to a new pool. `deaths` lists the video
    ids rejected that way. A result with "fatal" (a frame folder could not be written) raises
    WriteError. close() stops the pool.
    """

    def __init__(self, tasks: list[dict], workers: int):
        self._tasks, self._pool, self._workers = iter(tasks), None, workers
        self._pending: collections.deque = collections.deque()  # [task, future or result]
        self._state_dir = None
        self._inline = not (workers > 1 and tasks)
        self.deaths: list[str] = []
        if not self._inline:
            self._state_dir = tempfile.mkdtemp(prefix="tfvid-prepare-")
            self._start_pool()
            self._fill()

    def _start_pool(self) -> None:
        self._pool = futures.ProcessPoolExecutor(
            max_workers=self._workers, mp_context=multiprocessing.get_context("spawn"),
            initializer=_worker_init, initargs=(os.getpid(), self._state_dir))

    def _fill(self) -> None:
        while len(self._pending) < 4 * self._workers:
            task = next(self._tasks, None)
            if task is None:
                return
            try:
                fut = self._pool.submit(_run_task, task)
            except futures.process.BrokenProcessPool as e:  # broke meanwhile: recovered later
                fut = futures.Future()
                fut.set_exception(e)
            self._pending.append([task, fut])

    def __iter__(self):
        return self

    @staticmethod
    def _checked(result: dict) -> dict:
        if "fatal" in result:
            raise WriteError(result.get("errno") or errnolib.EIO, result["fatal"])
        return result

    def __next__(self) -> dict:
        if self._inline:
            return self._checked(process_video(next(self._tasks)))
        if not self._pending:
            raise StopIteration
        entry = self._pending[0]
        if isinstance(entry[1], futures.Future):
            try:
                entry[1] = entry[1].result()
            except futures.process.BrokenProcessPool:
                self._recover()
                return self.__next__()
        self._pending.popleft()
        self._fill()
        return self._checked(entry[1])

    def _recover(self) -> None:
        """After a worker died: keep finished results, rerun the videos that were being
        processed alone (rejecting the one that kills its process), resubmit the rest."""
        in_progress = set()
        for name in os.listdir(self._state_dir):
            path = os.path.join(self._state_dir, name)
            with open(path, encoding="utf-8") as f:
                vid = f.read().strip()
            os.remove(path)
            if vid:
                in_progress.add(vid)
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._pool = None
        suspects = []
        for entry in self._pending:
            fut = entry[1]
            if isinstance(fut, futures.Future):
                if fut.done() and not fut.cancelled() and fut.exception() is None:
                    entry[1] = fut.result()
                else:
                    entry[1] = None
                    suspects.append(entry)
        isolate = [e for e in suspects if e[0]["video_id"] in in_progress] or suspects
        for entry in isolate:
            entry[1] = run_isolated(entry[0])
            if "worker process died" in entry[1].get("reject", ""):
                self.deaths.append(entry[0]["video_id"])
        self._start_pool()
        for entry in suspects:
            if entry[1] is None:
                entry[1] = self._pool.submit(_run_task, entry[0])

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        if self._state_dir is not None:
            shutil.rmtree(self._state_dir, ignore_errors=True)
