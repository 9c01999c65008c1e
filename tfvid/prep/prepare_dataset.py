"""A whole dataset through prepare(): the splits of an index, each loaded and prepared into one
output folder, as the prepare_data job runs it.

    summaries = prepare_dataset("ucf101", videos_dir="UCF-101", index="ucfTrainTestlist",
                                splits=["train1", "test1"], output_dir="data/ucf101", flow="tvl1")
    print("\n".join(format_summary(s) for s in summaries))

Splits: DEFAULT_SPLITS per public format; folder / csv indexes without split information get
held-out fractions from holdout_fractions (--val_fraction / --test_fraction), and
tfvid.prep.indexes.check_splits refuses requests that would put a video in two splits. The
built-in synthetic set (tfvid.prep.synthetic) is generated on demand by synthetic_source.
"""
from __future__ import annotations

import os
import re
from typing import Callable, Sequence

from tfvid.prep.indexes import check_splits, load_index
from tfvid.prep.prepare import prepare

DEFAULT_SPLITS = {"ucf101": "train1,test1", "hmdb51": "train1,test1", "kinetics": "train,val",
                  "ssv2": "train,validation", "jester": "train,validation"}


def parse_splits(text: str | None, fmt: str) -> list[str]:
    """Comma-separated split names, default DEFAULT_SPLITS[fmt]; ValueError when none."""
    text = text or DEFAULT_SPLITS.get(fmt)
    if not text:
        raise ValueError(f"--split is required for --format={fmt} (e.g. --split=train)")
    return [s.strip() for s in text.split(",") if s.strip()]


def holdout_fractions(splits: Sequence[str], val_fraction: float = 0.0,
                      test_fraction: float = 0.0) -> dict[str, float] | None:
    """{held-out split name: fraction}: the requested split named val/valid/validation/dev (else
    'val') gets val_fraction, the one named test/testing (else 'test') test_fraction.
    ValueError when several requested splits match one held-out split."""
    holdout = {}
    for frac, pattern, default in ((val_fraction, r"val|valid|validation|dev", "val"),
                                   (test_fraction, r"test|testing", "test")):
        if frac > 0:
            named = [s for s in splits if re.fullmatch(rf"(?:{pattern})[-_]?\d*", s, re.I)]
            if len(named) > 1:
                raise ValueError(f"splits {', '.join(named)} all match the held-out split "
                                 f"{default!r}; request one of them")
            holdout[named[0] if named else default] = frac
    return holdout or None


def synthetic_source(root: str, num_classes: int | None = None,
                     videos_per_class: int | None = None) -> tuple[str, str]:
    """Generates the synthetic UCF101-layout set under root if missing (None: the generator's
    defaults); returns (videos_dir, index) to read as --format=ucf101."""
    videos, index = os.path.join(root, "videos"), os.path.join(root, "ucfTrainTestlist")
    if not all(os.path.isfile(os.path.join(index, f)) for f in ("classInd.txt", "testlist01.txt")):
        from tfvid.prep.synthetic import make_synthetic_dataset   # OpenCV + scikit-learn
        kwargs = {k: v for k, v in (("num_classes", num_classes),
                                    ("videos_per_class", videos_per_class)) if v}
        print(f"generating the synthetic dataset under {root}")
        make_synthetic_dataset(root, **kwargs)
    return videos, index


def prepare_dataset(fmt: str, *, videos_dir: str, index: str | None, splits: Sequence[str],
                    output_dir: str, classes_file: str | None = None,
                    holdout: dict[str, float] | None = None, holdout_seed: int = 0,
                    log: Callable[[str], None] = print, **options) -> list[dict]:
    """Checks the split request, then loads and prepares each split (tfvid.prep.prepare.prepare
    with `options`: num_shards, frame_size, flow, layout, workers, ...). Returns the summaries.
    Raises ValueError / OSError / tfvid.lock.LockedError as load_index and prepare do."""
    check_splits(fmt, videos_dir=videos_dir, index=index, splits=list(splits), holdout=holdout)
    summaries = []
    for split in splits:
        entries, classes = load_index(fmt, videos_dir=videos_dir, index=index, split=split,
                                      classes_file=classes_file, holdout=holdout,
                                      holdout_seed=holdout_seed)
        log(f"{split}: {len(entries)} videos listed, {len(classes)} classes")
        summaries.append(prepare(entries, classes, output_dir=output_dir, split=split,
                                 **options))
    return summaries


def format_summary(s: dict) -> str:
    """One split's summary as the job prints it (with the rejects / partial files when any)."""
    line = (f"{s['split']}: {s['videos']} videos, {s['frames']} frames, {s['rejects']} rejects, "
            f"{s['shards']} shards ({s['shards_skipped']} already done), "
            f"{s['frame_folders']} frame folders, {s['seconds']:.1f} s -> {s['output_dir']}")
    if s["rejects"]:
        line += f"\n  rejected videos and reasons: {s['files']['rejects']}"
    if s.get("partial"):
        line += (f"\n  {s['partial']} video(s) kept with part of their frames (truncated or "
                 f"damaged): {s['files']['partial']}")
    return line
