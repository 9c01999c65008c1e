"""Fuse the scores of several streams (late fusion) and report the fused metrics.

    python -m pipelines.fuse --scores=runs/rgb/eval/scores.npz,runs/flow/eval/scores.npz \\
        --weights=1,1.5 --output_dir=runs/fused

The fused logits are the weighted average of each stream's video logits, aligned by video id
(TSN: RGB 1 : flow 1.5; docs/tsn.md). Writes metrics.json, scores.npz,
confusion.png, confusion.csv and per_class.csv like the evaluate job.
"""
from __future__ import annotations

import os

from absl import flags

from pipelines.common import UsageError, check_args, define_flag, run_job, usage_errors

FLAGS = flags.FLAGS

define_flag("string", "scores", None, "Comma-separated scores.npz files written by the evaluate "
            "job.")
define_flag("string", "weights", None, "Comma-separated weights, one per score file (default "
            "equal).")
define_flag("string", "output_dir", None, "Where the fused results go.")


def parse_weights(text: str | None, count: int) -> list[float] | None:
    """'1,1.5' -> [1.0, 1.5] (one per score file); None/'' -> None (equal weights).
    Raises UsageError (an app.UsageError) naming the flag."""
    if not text:
        return None
    try:
        weights = [float(w) for w in text.split(",") if w.strip()]
    except ValueError:
        raise UsageError(f"--weights={text!r}: expected comma-separated numbers") from None
    if len(weights) != count:
        raise UsageError(f"--weights has {len(weights)} values for {count} --scores files")
    return weights


def fuse_files(paths: list[str], weights: list[float] | None, output_dir: str) -> dict:
    """The whole job as a function; returns the summary written to metrics.json."""
    from tfvid.eval import fusion, metrics, plots
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
        raise UsageError(f"--scores: no such file: {', '.join(missing)}")
    with usage_errors(ValueError, prefix="--scores: "):   # ids, classes, labels, weights
        fused = fusion.fuse(paths, weights)
    used = weights if weights is not None else [1.0] * len(paths)
    summary = plots.write_report(fused, output_dir, title="fused streams",
                                 extra={"fusion": {"scores": paths, "weights": used}})
    print(metrics.format_summary(summary))
    print(f"results written to {output_dir}")
    return summary


def main(argv):
    check_args(argv, "scores", "output_dir")
    paths = [p.strip() for p in FLAGS.scores.split(",") if p.strip()]
    if not paths:
        raise UsageError("--scores: give one or more scores.npz files, comma-separated")
    fuse_files(paths, parse_weights(FLAGS.weights, len(paths)), FLAGS.output_dir)


def run():
    """Console-script entry point (tfvid-fuse)."""
    run_job(main)


if __name__ == "__main__":
    run()
