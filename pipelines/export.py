"""Exports a trained model as a SavedModel in the TF Serving layout.

    python -m pipelines.export --model_dir=runs/tsn_rgb --export_base=saved_models

Rebuilds the model from <model_dir>/run_config.json, restores the latest checkpoint and writes
<export_base>/<name>/<version>/ with the signatures of tfvid.export.signatures: serving_default
(uint8 frames (B, T, H, W, 3), flow runs (B, T, H, W, 2)), encoded_frames (JPEG/PNG strings),
sequence_example (serialized prepare_data records), which run the evaluate job's default test
protocol in the graph (the model spec's: --protocol_segments snippets x --protocol_crops views
of the spec's test view side, averaged), and clip (float32 (None, T, S, S, C) in the evaluation
layout, one view per row: clients batch crops themselves and average the logits, as
pipelines.predict does); all return logits, probabilities, top_k_indices and top_k_classes.
Also a tfvid.json sidecar (tfvid.export.run_sidecar: class names, model, sampling,
preprocessing and protocol config) and TF Serving warmup requests for every signature. A run on
cached features (DIN / VideoMap with --backbone=none) exports float32 features (B, T, D) in the
signatures "features" and serving_default. The logic is tfvid.export.from_run's.
"""
from __future__ import annotations

from absl import flags

from pipelines.common import check_args, define_flag, flag_value, job_error, run_job
from tfvid.export.from_run import (build_protocol, describe, export_run,  # noqa: F401
                                   protocol_sampler)
from tfvid.models.spec import load_plugins

FLAGS = flags.FLAGS
load_plugins()   # TFVID_PLUGINS: modules registering model specs

define_flag("string", "model_dir", None, "Training directory with run_config.json and "
            "checkpoints.")
define_flag("string", "name", None, "Model name under --export_base (default: basename of "
            "--model_dir).")
define_flag("string", "export_base", "saved_models", "Root of the TF Serving model base paths.")
define_flag("integer", "version", 0, "Integer version to write; 0 = next after the existing ones. "
            "Existing versions are never overwritten.")
define_flag("integer", "num_segments", None, "Time length T of the exported signature. Default: "
            "the training value; 0 = variable T (models that allow it).")
define_flag("integer", "input_size", None, "Spatial side S of the exported 'clip' signature "
            "(default: the training value) and of the in-graph protocol's views (default: the "
            "evaluate job's, e.g. StNet's 256 test view for a run trained at 224).")
define_flag("bool", "warmup", True, "Write TF Serving warmup requests "
            "(assets.extra/tf_serving_warmup_requests).")
define_flag("integer", "protocol_crops", None, "Views per clip of the in-graph test protocol "
            "(signatures serving_default, encoded_frames, sequence_example): 1, 3 or 10 "
            "(default: the evaluate job's, the model spec's test protocol: TSN 10, StNet 1).")
define_flag("integer", "protocol_segments", None, "Test snippets of the in-graph protocol "
            "(default: the evaluate job's, the model spec's: 25 for TSN and StNet).")


# The library functions of this job (tfvid.export.from_run), under their old names here too.
export = export_run


def main(argv):
    check_args(argv, "model_dir")
    try:   # flag_value: this job's defaults even when another job defined the flag first
        path = export(FLAGS.model_dir, name=FLAGS.name, export_base=FLAGS.export_base,
                      version=FLAGS.version, num_segments=flag_value("num_segments", None),
                      input_size=flag_value("input_size", None), warmup=FLAGS.warmup,
                      protocol_crops=flag_value("protocol_crops", None),
                      protocol_segments=flag_value("protocol_segments", None))
    except (OSError, ValueError) as e:
        # user mistakes (no run, no checkpoint, existing version, bad flag): one line, no
        # traceback, exit status 1
        raise job_error("export", e) from None
    print(describe(path))


def run():
    """Console-script entry point (tfvid-export)."""
    run_job(main)


if __name__ == "__main__":
    run()
