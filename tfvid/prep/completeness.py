"""Are prepared shards complete? A check for the train and evaluate jobs (no TensorFlow import).

prepare_data writes, beside the shards of a split, `<split>-manifest.json` (the shard plan: the
names of all shards of the split) and `<split>-progress.jsonl` (one line per finished shard with
its byte size). A job reading `train1-*.tfrecord` while prepare_data still runs, or after it was
interrupted, would silently train on part of the data; `check_shards` says so instead:

    warnings = check_shards(paths, allow_incomplete=FLAGS.allow_incomplete)
    for w in warnings: logging.warning(w)

Errors (ValueError; with allow_incomplete=True returned as warnings instead):
  * shards the manifest lists that are missing or not recorded as finished;
  * a shard whose byte size differs from the size the progress log recorded (truncated or
    modified after it was written);
  * a given shard that the manifest does not list (left from an earlier preparation).
Warnings only: shards without a manifest beside them (written by another tool, or copied
without it) and files whose name carries no split. Raw-frame `.list` files are written at the
end of prepare_data, so a present list is complete: they give nothing.
"""
from __future__ import annotations

import json
import os
import re
from typing import Iterable

SHARD_RE = re.compile(r"^(?P<split>.+)-(?P<index>\d{5})-of-(?P<count>\d{5})\.tfrecord$")
_HINT = "(prepare_data still running or interrupted? rerun it, or pass --allow_incomplete)"


def _finished(progress_path: str) -> dict[str, dict]:
    """{shard name: its progress record}; a cut last line is ignored."""
    done = {}
    if os.path.isfile(progress_path):
        with open(progress_path, encoding="utf-8") as f:
            for line in f:
                try:
                    info = json.loads(line)
                    done[info["name"]] = info
                except (ValueError, KeyError, TypeError):
                    continue
    return done


def _check_split(folder: str, split: str, given: list[str]) -> tuple[list[str], list[str]]:
    """(errors, warnings) of one split's shards in one folder."""
    manifest_path = os.path.join(folder, f"{split}-manifest.json")
    if not os.path.isfile(manifest_path):
        return [], [f"{split}: no {split}-manifest.json beside {len(given)} shard(s) in {folder}; "
                    "cannot tell whether the split is complete"]
    try:
        with open(manifest_path, encoding="utf-8") as f:
            manifest = json.load(f)
        planned = [s["name"] for s in manifest["shards"]]
    except (OSError, ValueError, KeyError, TypeError):
        return [f"{manifest_path}: unreadable or has no shard plan; rerun prepare_data"], []
    done = _finished(os.path.join(folder, f"{split}-progress.jsonl"))
    errors = []
    missing = [n for n in planned
               if n not in done or not os.path.isfile(os.path.join(folder, n))]
    if missing:
        errors.append(f"{split}: {len(missing)} of {len(planned)} shards are missing: "
                      f"{', '.join(missing)} {_HINT}")
    for name in planned:
        path = os.path.join(folder, name)
        if name in done and os.path.isfile(path):
            size, want = os.path.getsize(path), done[name].get("bytes")
            if want is not None and size != want:
                errors.append(f"{path}: {size} bytes, but prepare_data wrote {want} (truncated "
                              "or modified); delete it and rerun prepare_data, or pass "
                              "--allow_incomplete")
    extra = sorted(os.path.basename(p) for p in given if os.path.basename(p) not in planned)
    if extra:
        errors.append(f"{split}: {', '.join(extra)} not in {manifest_path} (left from an earlier "
                      "preparation with another shard count?); delete them, or pass "
                      "--allow_incomplete")
    return errors, []


def check_shards(paths: Iterable[str], allow_incomplete: bool = False) -> list[str]:
    """Checks TFRecord shard paths against prepare_data's manifest and progress log.

    Returns warning strings; raises ValueError with all problems found (missing, unfinished,
    resized or unplanned shards) unless allow_incomplete, which returns them as warnings.
    `.list` files (raw-frame layout) are complete when present and give no message.
    """
    groups: dict[tuple[str, str], list[str]] = {}
    warnings: list[str] = []
    for p in paths:
        p = os.path.abspath(os.fspath(p))
        name = os.path.basename(p)
        if name.endswith(".list"):
            continue
        m = SHARD_RE.match(name)
        if not m:
            warnings.append(f"{p}: not named <split>-NNNNN-of-NNNNN.tfrecord; its completeness "
                            "cannot be checked")
            continue
        groups.setdefault((os.path.dirname(p), m.group("split")), []).append(p)
    errors = []
    for (folder, split), given in sorted(groups.items()):
        e, w = _check_split(folder, split, given)
        errors += e
        warnings += w
    if errors and not allow_incomplete:
        raise ValueError("incomplete prepared data:\n  " + "\n  ".join(errors))
    return errors + warnings
