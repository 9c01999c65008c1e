"""A run's test protocol as pipelines.evaluate runs it by default, from the model's spec.

    proto = default_protocol(run_config)          # spec's test segments, crops, view side
    proto.sampler, proto.num_crops, proto.input_size

The spec (tfvid.models.spec.ModelSpec) gives the paper protocol: TSN 25 snippets x 10 crops
(docs/tsn.md); StNet T = 25 super-images, one centre crop of the test view side (256 for a run
trained at 224: `ModelSpec.test_input_size_of`, docs/stnet.md); dynamic image networks MDI
windows over the whole video, one centre crop (docs/dynamic_images.md); models on cached
features one view. The export's in-graph signatures (tfvid.export.from_run) use the same
function, so a record scores the same through both.

Test view of side S_test != S_train (StNet): the model is rebuilt at S_test (its spatial axes
are convolutional with global pooling, so the trained weights load) and the views are centre
crops of S_test taken after the trained side's short-side rule (short side -> S_train * 256 //
224, i.e. 256: identity for 340 x 256 frames; `RunProtocol.scale_size`, passed to build_dataset
and the export's views), so StNet's test view is the 256 x 256 centre of the stored frame, not
rescaled (the official test reader).
"""
from __future__ import annotations

import dataclasses

from tfvid.train import run_dir


@dataclasses.dataclass(frozen=True)
class RunProtocol:
    """The evaluate job's test protocol of a run: the sampler (test mode), the views per time
    step and the spatial side of the views (None on cached features)."""
    sampler: object
    num_crops: int
    input_size: int | None
    #: short side the frames are scaled to before the crops (the trained side's rule)
    scale_size: int | None = None

    def describe(self) -> dict:
        return {"sampler": self.sampler.config(), "num_crops": self.num_crops,
                "test_input_size": self.input_size, "scale_size": self.scale_size}


def eval_sampler(run_config: dict, mode: str = "test", num_segments: int | None = None, *,
                 short_videos: str = "fit"):
    """The run's sampler for `mode` with `num_segments` test steps (None: the spec's
    test_segments); in test mode StNet's short-video rule 'fit' (min_segments = the training
    T, tfvid.data.sampling.stnet_test_segments) unless short_videos == 'wrap'. The 'weighted'
    consensus (which fixes T) keeps its trained T when no T is asked for."""
    try:
        sampler = run_dir.sampler_from_config(run_config, mode, num_segments)
    except ValueError:
        if num_segments is not None or run_config.get("consensus") != "weighted":
            raise
        sampler = run_dir.sampler_from_config(run_config, mode, run_config.get("num_segments"))
    return short_video_rule(sampler, run_config, mode, short_videos)


def short_video_rule(sampler, run_config: dict, mode: str, short_videos: str = "fit"):
    """In test mode, StNet's short-video rule (StNetSampler.min_segments = the training T)
    unless short_videos == 'wrap'. Other samplers and modes are returned as they are."""
    if mode != "test" or short_videos == "wrap" or not hasattr(sampler, "min_segments"):
        return sampler
    trained = int(run_config.get("num_segments") or sampler.num_segments)
    return dataclasses.replace(sampler, min_segments=max(1, trained))


def default_protocol(run_config: dict, *, mode: str = "test", num_segments: int | None = None,
                     num_crops: int | None = None, input_size: int | None = None,
                     short_videos: str = "fit") -> RunProtocol:
    """pipelines.evaluate's protocol for a run: the spec's test_protocol (test segments,
    crops; one view on cached features) and test view side (`ModelSpec.test_input_size_of`;
    mode 'val': the training side), each overridden by the argument when given."""
    spec = run_dir.model_spec(run_config)
    _, crops = spec.test_protocol(run_config)
    if num_crops is not None and spec.input_kind_of(run_config) != "features":
        crops = int(num_crops)
    if crops not in (1, 3, 10):
        raise ValueError(f"num_crops must be 1, 3 or 10, got {num_crops}")
    sampler = eval_sampler(run_config, mode, num_segments, short_videos=short_videos)
    if mode == "test":
        size = spec.test_input_size_of(run_config, input_size)
    else:                     # val: the training sampling at the training side
        size = spec.test_input_size_of(run_config, input_size or run_config.get("input_size"))
    trained = run_config.get("input_size")
    scale = None if size is None or not trained else int(trained) * 256 // 224
    return RunProtocol(sampler, crops, size, scale if scale and scale >= size else None)
