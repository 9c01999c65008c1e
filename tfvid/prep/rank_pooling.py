"""Rank pooling on numpy arrays, offline: approximate (ARP), exact (RP) and Table 2's metric.

Dynamic Image Networks (the dynamic image networks paper, docs/dynamic_images.md). A video
I_1..I_T (any array with time on `axis`: RGB frames (T, H, W, 3), flow (T, H, W, 2), feature
maps (T, h, w, c)) is pooled into one array d of the frame's shape.

Ranking function (eq. 1): S(t|d) = <d, V_t>, V_t = (1/t) sum_{tau<=t} psi(I_tau) (the
time-varying mean). The paper asks S(q|d) > S(t|d) for q > t.

  ARP  d = sum_t alpha_t psi(I_t), alpha_t = sum_{j=t..T} (2j - T - 1)/j (eq. 3; T=1 -> [1]).
       One gradient step of eq. (1) from d = 0; data independent; psi = identity.
  RP   d = the weight vector of a linear model fitted per video on the time-varying means:
       "svr" (default, what the reference code does: Fernando et al.'s genRepresentation, i.e.
       liblinear -s 11, L2-regularised L2-loss SVR, regressing the frame number t from V_t) or
       "ranksvm" (eq. 1 itself: a hinge-loss linear SVM on differences V_q - V_t).

The reference RP pipeline optionally transforms the means: nonlinearity="ssr" (signed square
root sign(x)sqrt(|x|), applied to V_t as the reference code does; the paper's text square-roots
the pixels before averaging, which is the same map for RP's purpose up to the order of the two
steps) and l2_normalize=True (each V_t scaled to unit norm, the reference's normD=2). Both are
off by default, so that RP and ARP rank the same features (psi = identity, as ARP and the
dynamic-image networks use). Pass the same options to pairwise_ranking_accuracy.

pairwise_ranking_accuracy (Table 2): the percentage (0..100) of frame pairs i < j with
S(j|d) > S(i|d) (ties count as wrong), S computed on the same features RP was fitted on:
the time-varying means by default (representation="mean"), or the frames themselves
(representation="frames").
"""
from __future__ import annotations

import warnings

import numpy as np

from tfvid.layers.rank_pooling import arp_weights

NONLINEARITIES = (None, "ssr")
REPRESENTATIONS = ("mean", "frames")
RP_METHODS = ("svr", "ranksvm")


def approximate_rank_pool(frames, axis: int = 0, dtype=np.float32) -> np.ndarray:
    """Dynamic image sum_t alpha_t frames_t of `frames` (time on `axis`), `dtype` array of the
    frame's shape (the input shape without `axis`). uint8 frames are fine (no 0..1 scaling).

    Accumulates frame by frame in `dtype`: on 150 uint8 340x256 frames this is about 4 times
    faster than a tensordot, which first converts the whole clip to floats.
    """
    x = np.moveaxis(np.asarray(frames), axis, 0)
    alpha = arp_weights(x.shape[0]).astype(dtype)
    out = np.zeros(x.shape[1:], dtype)
    tmp = np.empty_like(out)
    for t in range(x.shape[0]):
        np.multiply(x[t], alpha[t], out=tmp, casting="unsafe")
        out += tmp
    return out


def _as_matrix(frames, axis: int, scale: float) -> tuple[np.ndarray, tuple]:
    x = np.moveaxis(np.asarray(frames), axis, 0)
    if x.ndim < 2 or x.shape[0] < 1:
        raise ValueError(f"rank pooling needs frames with a time axis and data, got {x.shape}")
    m = x.reshape(x.shape[0], -1).astype(np.float64)
    if scale != 1.0:
        m *= scale
    return m, x.shape[1:]


def ranking_features(frames, axis: int = 0, representation: str = "mean",
                     nonlinearity: str | None = None, l2_normalize: bool = False,
                     scale: float = 1.0 / 255) -> np.ndarray:
    """The vectors the ranking function scores, float64 (T, D): psi(I_t) = scale * I_t
    flattened, then the time-varying means V_t (representation="mean") or psi itself
    ("frames"), then the optional signed square root and per-row L2 normalisation.

    `scale` maps 8-bit pixels to [0, 1]; it changes no ranking, only how strongly C
    regularises RP.
    """
    if representation not in REPRESENTATIONS:
        raise ValueError(f"representation must be one of {REPRESENTATIONS}, got {representation!r}")
    if nonlinearity not in NONLINEARITIES:
        raise ValueError(f"nonlinearity must be one of {NONLINEARITIES}, got {nonlinearity!r}")
    x, _ = _as_matrix(frames, axis, scale)
    if representation == "mean":
        x = np.cumsum(x, axis=0, out=x)
        x /= np.arange(1, x.shape[0] + 1, dtype=np.float64)[:, None]
    if nonlinearity == "ssr":
        x = np.sign(x) * np.sqrt(np.abs(x))
    if l2_normalize:
        x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    return x


def _rank_pairs(num_frames: int, max_pairs: int, rng: np.random.Generator) -> np.ndarray:
    """(P, 2) pairs (t, q) with t < q: all of them, or `max_pairs` drawn without repeats."""
    t, q = np.triu_indices(num_frames, 1)
    if t.size > max_pairs:
        keep = np.sort(rng.choice(t.size, size=max_pairs, replace=False))
        t, q = t[keep], q[keep]
    return np.stack([t, q], axis=1)


def exact_rank_pool(frames, C: float = 1.0, method: str = "svr", axis: int = 0,
                    representation: str = "mean", nonlinearity: str | None = None,
                    l2_normalize: bool = False, scale: float = 1.0 / 255,
                    epsilon: float = 0.0, fit_intercept: bool = True, max_iter: int = 1000,
                    max_pairs: int = 2000, seed: int = 0) -> np.ndarray:
    """Exact rank pooling (RP) of one video: float32 d of the frame's shape.

    Args:
      frames: (T, ...) array, time on `axis` (uint8 pixels, flow or features), T >= 2.
      C: inverse regularisation strength of the linear model (the reference uses C = 1).
      method: "svr": sklearn LinearSVR with the L2 loss in the primal (liblinear -s 11, as the
        reference), targets t = 1..T, `epsilon` insensitivity, optional intercept (a bias only
        shifts the scores, so it changes no ranking; the reference has none).
        "ranksvm": eq. (1): sklearn LinearSVC, hinge loss, no intercept, on differences
        V_q - V_t (q > t) labelled +1, every other one negated and labelled -1 (two classes);
        at most `max_pairs` pairs (drawn with `seed` when T(T-1)/2 is larger).
      representation, nonlinearity, l2_normalize, scale: see ranking_features.
      max_iter: solver iterations (liblinear).

    Memory: sklearn's liblinear works in float64 on a (T, D) matrix (T=150 frames of 340x256x3:
    about 0.3 GB, and "ranksvm" holds one row per pair).
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.svm import LinearSVC, LinearSVR

    if method not in RP_METHODS:
        raise ValueError(f"exact_rank_pool: method must be one of {RP_METHODS}, got {method!r}")
    x = ranking_features(frames, axis, representation, nonlinearity, l2_normalize, scale)
    T = x.shape[0]
    if T < 2:
        raise ValueError(f"exact_rank_pool needs at least 2 frames to rank, got {T}")
    frame_shape = np.moveaxis(np.asarray(frames), axis, 0).shape[1:]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        if method == "svr":
            model = LinearSVR(C=C, epsilon=epsilon, loss="squared_epsilon_insensitive",
                              dual=False, fit_intercept=fit_intercept, max_iter=max_iter,
                              random_state=seed)
            model.fit(x, np.arange(1, T + 1, dtype=np.float64))
        else:
            pairs = _rank_pairs(T, max_pairs, np.random.default_rng(seed))
            diff = x[pairs[:, 1]] - x[pairs[:, 0]]
            labels = np.ones(len(pairs))
            labels[1::2] = -1.0
            diff[1::2] *= -1.0
            if len(pairs) == 1:          # one pair: add its mirror so there are two classes
                diff, labels = np.concatenate([diff, -diff]), np.array([1.0, -1.0])
            model = LinearSVC(C=C, loss="hinge", dual=True, fit_intercept=False,
                              max_iter=max_iter, random_state=seed)
            model.fit(diff, labels)
    return np.asarray(model.coef_, np.float32).reshape(frame_shape)


def ranking_scores(frames, d, axis: int = 0, representation: str = "mean",
                   nonlinearity: str | None = None, l2_normalize: bool = False,
                   scale: float = 1.0 / 255) -> np.ndarray:
    """S(t|d) = <d, features_t> for t = 1..T, float64 (T,) (features: ranking_features)."""
    x = ranking_features(frames, axis, representation, nonlinearity, l2_normalize, scale)
    d = np.asarray(d, np.float64).reshape(-1)
    if d.size != x.shape[1]:
        raise ValueError(f"ranking_scores: d has {d.size} values but a frame has {x.shape[1]}")
    return x @ d


def pairwise_ranking_accuracy(frames, d, axis: int = 0, representation: str = "mean",
                              nonlinearity: str | None = None, l2_normalize: bool = False,
                              scale: float = 1.0 / 255) -> float:
    """Percentage (0..100) of frame pairs i < j that d orders correctly, S(j|d) > S(i|d)
    (paper Table 2; ties count as wrong). Features as in ranking_features (default: the
    time-varying means of the frames, on which eq. (1) defines S). T=1 has no pair: 100."""
    s = ranking_scores(frames, d, axis, representation, nonlinearity, l2_normalize, scale)
    if s.size < 2:
        return 100.0
    i, j = np.triu_indices(s.size, 1)
    return float(100.0 * np.mean(s[j] > s[i]))
