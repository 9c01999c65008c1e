"""Bad training / validation data met by tfvid.train.loop: fail, or log each bad video once.

build_dataset marks an invalid element with valid=False and a 'problem' text ("video <id>
(<where>): <reason>"); the loop gives it zero weight (bad_data='skip') and `BadData` logs it
once and lists it for metrics.json, or stops the run (bad_data='fail').
"""
from __future__ import annotations

import logging

import numpy as np

log = logging.getLogger("tfvid.train")
POLICIES = ("skip", "fail")


class BadData:
    """Invalid examples of the build_dataset batches: fail (ValueError with the problem) or log
    each bad video once (by id) and list it in `seen` (id -> problem)."""

    def __init__(self, policy: str, strategy):
        if policy not in POLICIES:
            raise ValueError(f"bad_data must be 'skip' or 'fail', got {policy!r}")
        self.policy, self.strategy, self.seen = policy, strategy, {}

    def check(self, batch, what: str) -> None:
        """batch: a distributed batch dict with 'problem' and 'id' (B,) per replica."""
        local = self.strategy.experimental_local_results
        problems = np.concatenate([np.reshape(p.numpy(), [-1]) for p in local(batch["problem"])])
        if not problems.any():
            return
        ids = np.concatenate([np.reshape(i.numpy(), [-1]) for i in local(batch["id"])])
        for vid, problem in zip(ids, problems):
            if not problem:
                continue
            text = problem.decode("utf-8", "replace")
            if self.policy == "fail":
                raise ValueError(f"bad {what} data: {text} (bad_data='skip' trains without it)")
            key = vid.decode("utf-8", "replace") or text
            if key not in self.seen:
                self.seen[key] = text
                log.warning("skipping bad %s video: %s", what, text)
