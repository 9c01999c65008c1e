"""StNet through the jobs: train (--model=stnet) -> evaluate (T=7 train, more test segments)
-> export -> TFLite, on tiny synthetic records."""
import json

import numpy as np


def test_stnet_train_evaluate_export_tflite(tiny_records, tmp_path):
    from absl import flags

    from pipelines import train as job
    from pipelines.evaluate import evaluate_model_dir
    from pipelines.export import export
    from tfvid.export import check_parity, convert_to_tflite, load_export

    run = tmp_path / "stnet"
    argv = ["train", f"--train_data={','.join(tiny_records)}", f"--model_dir={run}", "--model=stnet",
            "--backbone=tiny", "--width=0.25", "--input_size=32", "--num_segments=3",
            "--frames_per_segment=2", "--temporal_block=official", "--batch_size=2",
            "--steps=3", "--lr=0.01", "--noprogress", "--log_every=1"]
    try:
        flags.FLAGS.unparse_flags()
        flags.FLAGS(argv)
        metrics = job.main(["train"])
    finally:
        flags.FLAGS.unparse_flags()
    assert metrics["final_step"] == 3
    cfg = json.loads((run / "run_config.json").read_text())
    assert cfg["sampler"]["name"] == "stnet"
    assert (cfg["sampler"]["num_segments"], cfg["sampler"]["frames_per_segment"]) == (3, 2)

    # Test protocol with more segments than training (the time axis is variable).
    summary = evaluate_model_dir(str(run), ",".join(tiny_records), mode="test", num_segments=5,
                                 num_crops=1, progress=False)
    assert summary["num_videos"] == 4 and 0 <= summary["top1"] <= 1
    assert summary["protocol"]["short_videos"]["count"] == 0     # 14-20 frames hold 5 x 2
    # The default 25 segments of 2 frames: the 14-20 frame videos are short; each gets the
    # largest T it holds without wrapping (7..10), not 25 wrapped super-images.
    summary = evaluate_model_dir(str(run), ",".join(tiny_records), mode="test", num_crops=1,
                                 batch_size=2, progress=False,
                                 output_dir=str(tmp_path / "eval25"))
    short = summary["protocol"]["short_videos"]
    assert summary["num_videos"] == 4 and short["count"] == 4
    assert all(7 <= e["segments"] <= 10 for e in short["examples"])

    path = export(str(run), name="stnet", export_base=str(tmp_path / "saved"), version=0,
                  num_segments=5, input_size=None, warmup=False)
    serving, sidecar = load_export(path)
    assert sidecar["input_shape"][1:] == [5, 32, 32, 6]
    clip = np.random.default_rng(0).normal(size=(1, 5, 32, 32, 6)).astype(np.float32)
    probs = serving(clip)["probabilities"].numpy()
    np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-5)

    tflite = convert_to_tflite(path, str(tmp_path / "stnet.tflite"))
    assert check_parity(path, tflite, num_samples=1, atol=1e-4) < 1e-4
