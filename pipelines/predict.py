"""Classifies video files with an exported model (pipelines.export).

    python -m pipelines.predict --export_dir=saved_models/tsn_rgb --video=a.mp4,clips/,'more/*.avi'
    python -m pipelines.predict --export_dir=... --video=match.mp4 --untrimmed --output=out/
    python -m pipelines.predict --server=localhost:8500 --export_dir=... --video=a.mp4

--video takes files, folders (recursive: video files by extension, folders of frame images)
and globs. Videos are decoded as the training data was, preprocessed as at evaluation and
--batch_size of them go through the export's float32 clip signature at once
(tfvid.eval.predict); a progress bar counts them. Results: the top-k classes per video on
stdout; --output=PATH (a folder, or a prefix) writes PATH.json and PATH.csv (video, status,
frames, top-k classes and probabilities, reason). A corrupt, truncated or non-video file is
reported by name (status "error" or "partial" with the reason) and the others continue.

--untrimmed (long videos, tfvid.eval.untrimmed): streamed decoding, --snippets_per_second
snippets scored in batches, M-TWI aggregation for the video's classes, and a timeline JSON + PNG
per video beside --output. --attention_plot=PATH (DIN / VideoMap): which frames the model
looked at (tfvid.eval.frame_attention; the model is rebuilt from the run dir the sidecar
records, or --model_dir). --server=HOST:PORT sends the videos to a running TF Serving over
gRPC instead (tfvid.eval.remote; --signature, --model_name).
"""
from __future__ import annotations

import json
import os

from absl import flags, logging

from pipelines.common import check_args, define_flag, flag_value, job_error, run_job
from tfvid.eval import predict as lib

FLAGS = flags.FLAGS

define_flag("string", "export_dir", None, "An export version dir "
            "(saved_models/<name>/<version>) or a model dir (saved_models/<name>: the newest "
            "version).")
define_flag("list", "video", None, "Videos to classify, comma-separated: files (mp4, avi, "
            "webm...), folders (searched recursively) and globs ('clips/**/*.mp4').")
define_flag("integer", "num_crops", 1, "Views per clip: 1 (centre), 3 or 10 (corners + centre, "
            "flipped).")
define_flag("integer", "top_k", 5, "How many classes to print and write per video.")
define_flag("string", "output", None, "Results as PATH.json and PATH.csv (PATH a prefix), or "
            "predictions.json / .csv inside PATH when it is a folder or ends in '/'. "
            "--untrimmed timelines go beside them.")
define_flag("string", "json", None, "Optional path of one more JSON file for the predictions.")
define_flag("integer", "batch_size", 8, "Videos per call of the export (their views together).")
define_flag("bool", "progress", True, "Show a progress bar.")
define_flag("bool", "untrimmed", False, "Long videos: streamed decoding, snippets at "
            "--snippets_per_second, M-TWI aggregation, a timeline JSON + PNG per video.")
define_flag("float", "snippets_per_second", 1.0, "With --untrimmed: snippets per second.")
define_flag("float", "snippet_seconds", None, "With --untrimmed: seconds of video each snippet "
            "clip is sampled from (default 1 / --snippets_per_second).")
define_flag("string", "attention_plot", None, "PNG of the temporal attention (VideoMap a0, "
            "DIN's per-width filter use) of the first videos; needs the training run.")
define_flag("string", "model_dir", None, "With --attention_plot: the training run to rebuild "
            "the model from (default: the one the export's sidecar records).")
define_flag("string", "server", None, "HOST:PORT of a running TF Serving gRPC endpoint: send "
            "the videos there (PredictionService.Predict) instead of loading --export_dir "
            "(which, when given, still supplies the sidecar: decoding options, class names, "
            "model name).")
define_flag("enum", "signature", "encoded_frames", "With --server: the signature to call. "
            "encoded_frames (JPEG frames, the smallest request: gRPC's default limit is 4 MB), "
            "serving_default (uint8 frames), sequence_example (one tfvid record per video) or "
            "clip (float32 views preprocessed here).",
            enum_values=["encoded_frames", "serving_default", "sequence_example", "clip"])
define_flag("string", "model_name", None, "With --server: TF Serving's model name (default: "
            "the sidecar's 'name').")
define_flag("float", "server_timeout", 60.0, "With --server: seconds to wait for each reply.")


def predict(export_dir: str, videos, *, num_crops: int = 1, top_k: int = 5,
            json_path: str | None = None, output: str | None = None, batch_size: int = 8,
            untrimmed: dict | None = None, attention_plot: str | None = None,
            model_dir: str | None = None, progress: bool = False, out=None) -> list[dict]:
    """The job as a function: prints the top-k classes per video, writes the outputs, returns
    the results (a video that cannot be read: {"video", "status": "error", "error", "reason"};
    the others still run). untrimmed: None, or tfvid.eval.untrimmed.predict_untrimmed keywords
    (rate, window) to score long videos."""
    lib.check_options(num_crops, top_k)
    if json_path and os.path.isdir(json_path):
        raise ValueError(f"--json={json_path} is a directory; give the JSON file's path")
    serving, sidecar = lib.load(export_dir)
    paths, skipped = lib.expand_inputs(videos)
    for item in skipped:
        logging.info("skipped %s: %s", item["path"], item["reason"])
    show = lambda result: lib.print_result(result, out)  # noqa: E731
    if untrimmed is None:
        results = lib.predict_files(serving, sidecar, paths, num_crops=num_crops, top_k=top_k,
                                    batch_size=batch_size, progress=progress, on_result=show)
    else:
        from tfvid.eval import untrimmed as long_videos
        results = long_videos.predict_untrimmed_files(
            serving, sidecar, paths, output=output, on_result=show, progress=progress,
            num_crops=num_crops, top_k=top_k, batch_size=batch_size, **untrimmed)
    meta = {"export_dir": serving.path, "num_crops": num_crops, "untrimmed": untrimmed,
            "skipped": skipped}
    if attention_plot:
        from tfvid.eval import frame_attention
        drawn = frame_attention.plot_attention(sidecar, results, attention_plot,
                                               model_dir=model_dir)
        meta["attention"] = {k: drawn[k] for k in ("path", "kind", "model_dir", "videos")}
        print(f"attention plot ({drawn['kind']}, model rebuilt from {drawn['model_dir']}): "
              f"{attention_plot}", file=out)
    written = lib.write_results(results, output, json_path=json_path, top_k=top_k, meta=meta)
    if written:
        print("written: " + ", ".join(written.values()), file=out)
    return results


def main(argv):
    server = flag_value("server", None)
    if server:
        check_args(argv, "video")
    else:
        check_args(argv, "export_dir", "video")
    # flag_value: this job's default even when another job defined a shared flag first
    common = dict(num_crops=int(flag_value("num_crops", 1)), top_k=FLAGS.top_k,
                  json_path=FLAGS.json, output=flag_value("output", None),
                  progress=bool(flag_value("progress", True)))
    try:
        if server:
            from tfvid.eval import remote
            results = remote.predict_remote(
                server, FLAGS.video, export_dir=FLAGS.export_dir,
                model_name=flag_value("model_name", None),
                signature=flag_value("signature", "encoded_frames"),
                timeout=float(flag_value("server_timeout", 60.0)), **common)
        else:
            untrimmed = None
            if flag_value("untrimmed", False):
                untrimmed = {"rate": float(flag_value("snippets_per_second", 1.0)),
                             "window": flag_value("snippet_seconds", None)}
            results = predict(FLAGS.export_dir, FLAGS.video,
                              batch_size=int(flag_value("batch_size", 8)), untrimmed=untrimmed,
                              attention_plot=flag_value("attention_plot", None),
                              model_dir=flag_value("model_dir", None), **common)
    except (OSError, ValueError) as e:
        # user mistakes (no export, bad sidecar, bad flag, unwritable --output): one line, no
        # traceback, exit status 1
        raise job_error("predict", e) from None
    failed = [r["video"] for r in results if r["status"] == "error"]
    partial = [r["video"] for r in results if r["status"] == "partial"]
    if partial:
        logging.warning("%d damaged or truncated videos predicted from their readable part: %s",
                        len(partial), ", ".join(partial))
    if failed:
        raise SystemExit(f"{len(failed)} of {len(results)} videos failed: {', '.join(failed)}")
    if not results:
        raise SystemExit(f"no video found in --video={json.dumps(FLAGS.video)}")


def run():
    """Console-script entry point (tfvid-predict)."""
    run_job(main)


if __name__ == "__main__":
    run()
