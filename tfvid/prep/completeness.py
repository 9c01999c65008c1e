"""Are prepared shards complete? A check for the train and evaluate jobs (no TensorFlow import).

Two writers leave a record of what they planned and finished beside their shards:

  * prepare_data: `<split>-manifest.json` (the shard plan: the names of all shards of the split)
    and `<split>-progress.jsonl` (one line per finished shard with its byte size);
  * extract_features: `extract_features-manifest.json` (its options and, per split, the names of
    the shards it was given), `extract_features-progress.jsonl` (one line per finished feature
    shard with its byte size) and `extract_features-summary.json` (the shards that failed in
    its last run, with the reason).

A job reading `train1-*.tfrecord` while a writer still runs, or after it was interrupted, would
silently train on part of the data; `check_shards` says so instead:

    warnings = check_shards(paths, allow_incomplete=FLAGS.allow_incomplete)
    for w in warnings: logging.warning(w)

Errors (ValueError; with allow_incomplete=True returned as warnings instead):
  * shards the plan lists that are missing or not recorded as finished (feature shards: with the
    reason when the last extract_features run gave one);
  * feature shards of a split that extract_features was never given: a shard name says how many
    shards its split has (`-of-NNNNN`), so features of part of a split are found;
  * a shard whose byte size differs from the size the progress log recorded (truncated or
    modified after it was written);
  * a given shard that the plan does not list (left from an earlier run).
Warnings only: shards without a manifest beside them (written by another tool, or copied
without it) and files whose name carries no split. Raw-frame `.list` files are written at the
end of prepare_data, so a present list is complete: they give nothing. A complete split gives
nothing either.
"""
from __future__ import annotations

import json
import os
import re
from typing import Iterable

SHARD_RE = re.compile(
    r"^(?P<split>.+)-(?P<index>\d{5})-of-(?P<count>\d{5})\.tfrecord(?P<gz>\.gz)?$")
FEATURES_JOB = "extract_features"
_HINT = "({} still running or interrupted? rerun it, or pass --allow_incomplete)"


def shard_split(name: str) -> str | None:
    """The split of a shard named <split>-NNNNN-of-NNNNN.tfrecord[.gz], None for other names."""
    m = SHARD_RE.match(os.path.basename(name))
    return m.group("split") if m else None


def split_shard_names(name: str) -> list[str]:
    """All shard names of the split of `name` (`-of-NNNNN` of them), [] for other names."""
    m = SHARD_RE.match(os.path.basename(name))
    if not m:
        return []
    count, gz = int(m.group("count")), m.group("gz") or ""
    return [f"{m.group('split')}-{k:05d}-of-{count:05d}.tfrecord{gz}" for k in range(count)]


def _count(name: str) -> int | None:
    m = SHARD_RE.match(name)
    return int(m.group("count")) if m else None


def update_plan(plan: dict | None, names: Iterable[str]) -> dict:
    """extract_features' plan {split: [shard names]} after a run given `names`: the run's
    shards of a split are added to the split's plan; when their shard count (`-of-NNNNN`)
    differs from the planned one, they replace it (the old shards become strays). Other splits
    are kept. Names without a split are planned under their own name."""
    plan = {k: list(v) for k, v in (plan or {}).items()}
    new: dict[str, list[str]] = {}
    for name in names:
        name = os.path.basename(name)
        new.setdefault(shard_split(name) or name, []).append(name)
    for split, given in new.items():
        counts = {_count(n) for n in given}
        old = [n for n in plan.get(split, []) if _count(n) in counts]
        plan[split] = sorted(set(old) | set(given))
    return plan


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


def _read_json(path: str):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _check_against(folder: str, split: str, planned: list[str], done: dict, given: list[str],
                   writer: str, manifest_path: str, reasons: dict | None = None) -> list[str]:
    """Errors of one split's given shards against a plan and the finished shards."""
    errors = []
    missing = [n for n in planned
               if n not in done or not os.path.isfile(os.path.join(folder, n))]
    if missing:
        what = "feature shards" if writer == FEATURES_JOB else "shards"
        why = [f"{n}: {reasons[n]}" for n in missing if reasons and n in reasons]
        errors.append(f"{split}: {len(missing)} of {len(planned)} {what} are missing: "
                      f"{', '.join(missing)} {_HINT.format(writer)}" +
                      (f"; the last run failed on {'; '.join(why)}" if why else ""))
    for name in planned:
        path = os.path.join(folder, name)
        if name in done and os.path.isfile(path):
            size, want = os.path.getsize(path), done[name].get("bytes")
            if want is not None and size != want:
                errors.append(f"{path}: {size} bytes, but {writer} wrote {want} (truncated "
                              f"or modified); delete it and rerun {writer}, or pass "
                              "--allow_incomplete")
    extra = sorted(os.path.basename(p) for p in given if os.path.basename(p) not in planned)
    if extra:
        errors.append(f"{split}: {', '.join(extra)} not in {manifest_path} (left from an earlier "
                      f"{writer} run with another shard count?); delete them, or pass "
                      "--allow_incomplete")
    return errors


def _check_prepared(folder: str, split: str, given: list[str]) -> tuple[list[str], list[str]]:
    """(errors, warnings) of one split's prepare_data shards."""
    manifest_path = os.path.join(folder, f"{split}-manifest.json")
    try:
        planned = [s["name"] for s in _read_json(manifest_path)["shards"]]
    except (OSError, ValueError, KeyError, TypeError):
        return [f"{manifest_path}: unreadable or has no shard plan; rerun prepare_data"], []
    done = _finished(os.path.join(folder, f"{split}-progress.jsonl"))
    return _check_against(folder, split, planned, done, given, "prepare_data",
                          manifest_path), []


def _failed_reasons(folder: str) -> dict[str, str]:
    """{feature shard name: reason} of the shards extract_features' last run failed on."""
    try:
        failed = _read_json(os.path.join(folder, f"{FEATURES_JOB}-summary.json"))["shards_failed"]
        return {os.path.basename(f["shard"]): " ".join(str(f.get("error", "")).split())[:200]
                for f in failed}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}


def _check_features(folder: str, split: str, given: list[str]) -> tuple[list[str], list[str]]:
    """(errors, warnings) of one split's extract_features shards. The plan is the manifest's,
    checked against every shard the split's names announce (`-of-NNNNN`); a manifest written
    before it had a plan: all shards the names announce."""
    manifest_path = os.path.join(folder, f"{FEATURES_JOB}-manifest.json")
    try:
        manifest = _read_json(manifest_path)
        plan = manifest.get("plan") or {}
    except (OSError, ValueError, AttributeError):
        return [f"{manifest_path}: unreadable; rerun extract_features"], []
    done = _finished(os.path.join(folder, f"{FEATURES_JOB}-progress.jsonl"))
    errors = []
    if split not in plan:       # an older manifest: what the progress log and the names say
        seen = [n for n in done if shard_split(n) == split] + [os.path.basename(p) for p in given]
        planned = sorted({a for n in seen for a in split_shard_names(n)})
        return _check_against(folder, split, planned, done, given, FEATURES_JOB,
                              manifest_path, _failed_reasons(folder)), []
    planned = list(plan[split])
    announced = sorted({a for n in planned for a in split_shard_names(n)})
    never = [n for n in announced if n not in planned]
    if never:
        errors.append(f"{split}: extract_features was given {len(planned)} of the "
                      f"{len(announced)} shards of the split; no features of "
                      f"{', '.join(never)} (run it on every shard of the split, or pass "
                      "--allow_incomplete)")
    return errors + _check_against(folder, split, planned, done, given, FEATURES_JOB,
                                   manifest_path, _failed_reasons(folder)), []


def _check_split(folder: str, split: str, given: list[str]) -> tuple[list[str], list[str]]:
    """(errors, warnings) of one split's shards in one folder."""
    if os.path.isfile(os.path.join(folder, f"{split}-manifest.json")):
        return _check_prepared(folder, split, given)
    if os.path.isfile(os.path.join(folder, f"{FEATURES_JOB}-manifest.json")):
        return _check_features(folder, split, given)
    return [], [f"{split}: no {split}-manifest.json (prepare_data) or "
                f"{FEATURES_JOB}-manifest.json beside {len(given)} shard(s) in {folder}; "
                "cannot tell whether the split is complete"]


def check_shards(paths: Iterable[str], allow_incomplete: bool = False) -> list[str]:
    """Checks TFRecord shard paths against the manifest and progress log of the job that wrote
    them (prepare_data or extract_features).

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
        split = shard_split(name)
        if split is None:
            warnings.append(f"{p}: not named <split>-NNNNN-of-NNNNN.tfrecord; its completeness "
                            "cannot be checked")
            continue
        groups.setdefault((os.path.dirname(p), split), []).append(p)
    errors = []
    for (folder, split), given in sorted(groups.items()):
        e, w = _check_split(folder, split, given)
        errors += e
        warnings += w
    if errors and not allow_incomplete:
        raise ValueError("incomplete prepared data:\n  " + "\n  ".join(errors))
    return errors + warnings
