"""Exports the four trained dynamic image streams (SI, DI, OF, DOF) as ONE SavedModel.

    python -m pipelines.export_four_stream --si_dir=runs/si --di_dir=runs/di \\
        --of_dir=runs/of --dof_dir=runs/dof --weights=1,1,1,1 --name=four_stream

Each --<stream>_dir is a training run of --model=dynamic_image --stream=<stream> (its
run_config.json and checkpoints, see pipelines/train.py). The four networks are rebuilt and
restored (tfvid.train.run_dir), wrapped by tfvid.models.four_stream.build_four_stream_model
(weighted average of the streams' logits, paper section 5.10) and written to
<export_base>/<name>/<version>/ in the TF Serving layout with a tfvid.json sidecar and warmup
requests. Signatures (tfvid.export.signatures): serving_default takes uint8 rgb frames
(B, T, H, W, 3) and flow fields (B, T', H, W, 2), encoded_frames their JPEG/PNG strings,
sequence_example prepare_data records with flow, all running the streams' MDI test windows and
--protocol_crops views in the graph; clip takes rgb (None, W, S, S, 30) and flow
(None, W', S, S, 20) float32 windows preprocessed as at evaluation (see the sidecar). All
return logits, probabilities, top_k_indices, top_k_classes.

The same fusion from score files, without an export: evaluate each run, then
    python -m pipelines.fuse --scores=runs/si/eval/scores.npz,runs/di/eval/scores.npz,\\
        runs/of/eval/scores.npz,runs/dof/eval/scores.npz --weights=1,1,1,1 --output_dir=...
"""
from __future__ import annotations

from absl import flags

from pipelines.common import check_args, define_flag, job_error, run_job
from tfvid.export import read_sidecar
from tfvid.export.four_stream import (STREAMS, export_four_stream_runs,  # noqa: F401
                                      load_stream, parse_weights, run_stream, stream_sidecar)

FLAGS = flags.FLAGS

for _stream in STREAMS:
    define_flag("string", f"{_stream}_dir", None, f"Training run directory of the "
                f"{_stream.upper()} stream (--model=dynamic_image --stream={_stream}).")
# A string, as pipelines.train's --weights (one flag per name in a process): parse_weights splits.
define_flag("string", "weights", None, "Fusion weights of si, di, of, dof: 4 comma-separated "
            "numbers (default equal, the paper's average).")
define_flag("string", "name", None, "Model name under --export_base (default four_stream).")
define_flag("string", "export_base", "saved_models", "Root of the TF Serving model base paths.")
define_flag("integer", "version", 0, "Integer version to write; 0 = next after the existing "
            "ones. Existing versions are never overwritten.")
define_flag("integer", "num_windows", 0, "Windows W of the signature; 0 = variable (any W).")
define_flag("bool", "warmup", True, "Write TF Serving warmup requests.")
define_flag("integer", "protocol_crops", 10, "Views per window of the in-graph test protocol "
            "(signatures serving_default, encoded_frames, sequence_example): 1, 3 or 10.")


# The library functions of this job (tfvid.export.four_stream), under their old names too.
export = export_four_stream_runs


def main(argv):
    check_args(argv)
    try:
        weights = parse_weights(FLAGS.weights)
        path = export({s: FLAGS[f"{s}_dir"].value for s in STREAMS}, weights=weights,
                      name=FLAGS.name, export_base=FLAGS.export_base, version=FLAGS.version,
                      num_windows=FLAGS.num_windows or None, warmup=FLAGS.warmup,
                      protocol_crops=FLAGS.protocol_crops)
    except (OSError, ValueError) as e:
        # user mistakes (a missing or wrong run dir, bad --weights, an existing version): one
        # line, no traceback, exit status 1
        raise job_error("export_four_stream", e) from None
    print(f"exported: {path}")
    for sig_name, desc in sorted(read_sidecar(path).get("signatures", {}).items()):
        inputs = ", ".join(f"{k} {v['dtype']} {v['shape']}" for k, v in desc["inputs"].items())
        print(f"signature {sig_name!r}: {inputs} -> {', '.join(desc['outputs'])}")
    return path


def run():
    """Console-script entry point (tfvid-export-four-stream)."""
    run_job(main)


if __name__ == "__main__":
    run()
