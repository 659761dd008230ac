"""Exact and near-duplicate images whose labels conflict: the trace of relabelled copies.

A label-flip or mislabel attack that copies images and gives them another label (and a backdoor
whose trigger barely changes the picture) leaves *the same picture twice with two labels* in the
training set, something that almost never happens in curated data. This detector finds

* exact duplicates: identical pixels (sha256 of the pixel bytes);
* near duplicates: perceptual hashes (pHash) within ``max_distance`` bits of each other,

and flags the samples that have a duplicate with **another label** (in the dataset itself or,
when a ``trusted`` set is given, in the trusted set). Same-label duplicates are only counted in
``details_`` unless ``flag_same_label=True``.

pHash (Zauner, "Implementation and Benchmarking of Perceptual Image Hash Functions", Master's
thesis, Upper Austria University of Applied Sciences, 2010): grayscale, area-resize to 32x32,
2-D DCT-II, keep the top-left 8x8 low-frequency block, drop the DC term (it only encodes the
mean brightness) and set one bit per coefficient above the block's median. The 63 informative
bits (the DC bit is always 0) are packed into one uint64, so a Hamming distance is one XOR and a
popcount. Pairs within ``max_distance`` are found without an N x N matrix by multi-probe
locality-sensitive hashing on 4 bands of 16 bits (Indyk & Motwani, "Approximate Nearest
Neighbors: Towards Removing the Curse of Dimensionality", STOC 1998; Lv et al., "Multi-Probe
LSH", VLDB 2007): two hashes at most ``d`` bits apart agree on some band up to ``d // 4`` bit
flips (pigeonhole), so probing those few neighbouring band keys finds every such pair exactly.
"""

from __future__ import annotations

import hashlib
import itertools
from typing import Any

import numpy as np
import scipy.fft

from poisonlab.data.dataset import Dataset
from poisonlab.defenses.base import Defense, ScanContext, check_positive_int

__all__ = ["DuplicateDetector", "hamming_distance", "perceptual_hash", "pixel_digests"]

_HASH_SIZE = 32  # side of the resized image the DCT runs on
_BLOCK = 8  # low-frequency block side: 8 x 8 = 64 bits
_CHUNK = 4096  # images per resize/DCT batch, bounds the float64 working memory


def _area_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) box-filter weights: each output cell averages the input cells it overlaps."""
    edges = np.linspace(0.0, n_in, n_out + 1)
    lo = np.maximum(edges[:-1, None], np.arange(n_in)[None, :])
    hi = np.minimum(edges[1:, None], np.arange(1, n_in + 1)[None, :])
    return np.clip(hi - lo, 0.0, None) * (n_out / n_in)


def _low_dct_matrix(n_in: int) -> np.ndarray:
    """(8, n_in): area-resize to 32 samples, then the first 8 orthonormal DCT-II coefficients."""
    dct = scipy.fft.dct(np.eye(_HASH_SIZE), type=2, norm="ortho", axis=0)[:_BLOCK]
    return dct @ _area_matrix(n_in, _HASH_SIZE)


def perceptual_hash(images: np.ndarray) -> np.ndarray:
    """64-bit DCT perceptual hash of each image (see the module docstring).

    Parameters
    ----------
    images : np.ndarray
        uint8 images, shape (N, H, W, C) with C in (1, 3), values in [0, 255].

    Returns
    -------
    np.ndarray
        Hashes, shape (N,), dtype uint64. Images that differ by noise, mild compression or a
        brightness shift get hashes a few bits apart; unrelated images differ in ~32 bits.
    """
    x = np.asarray(images)
    if x.ndim != 4 or x.shape[-1] not in (1, 3) or x.dtype != np.uint8:
        raise ValueError(f"images must be uint8 (N, H, W, C) with C in (1, 3), got {x.dtype} {x.shape}")
    n, h, w, c = x.shape
    # resize and the low-frequency DCT rows are both linear: fold them into one (8, H) and one
    # (8, W) matrix, so each image costs two small matmuls instead of a 32x32 resize and full DCT
    rows, cols = _low_dct_matrix(h), _low_dct_matrix(w)
    weights = np.array([1.0]) if c == 1 else np.array([0.299, 0.587, 0.114])
    out = np.empty(n, dtype=np.uint64)
    place = (np.uint64(1) << np.arange(63, -1, -1, dtype=np.uint64))[None, :]
    for start in range(0, n, _CHUNK):
        gray = x[start : start + _CHUNK].astype(np.float64) @ weights
        block = np.matmul(np.matmul(rows, gray), cols.T).reshape(gray.shape[0], _BLOCK * _BLOCK)
        bits = block > np.median(block[:, 1:], axis=1, keepdims=True)
        bits[:, 0] = False  # the DC term only says how bright the image is
        out[start : start + _CHUNK] = (bits.astype(np.uint64) * place).sum(axis=1, dtype=np.uint64)
    return out


def hamming_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Number of differing bits between uint64 hashes (broadcasting), as int64."""
    xor = np.bitwise_xor(np.asarray(a, np.uint64), np.asarray(b, np.uint64))
    return np.bitwise_count(xor).astype(np.int64)


def pixel_digests(images: np.ndarray) -> np.ndarray:
    """sha256 of each image's pixel bytes, shape (N,), dtype ``S32`` (raw 32-byte digests).

    One ``hashlib`` call per image (about 3 us for a 32x32x3 image): the digest itself has no
    vectorised form, and the loop body is a single C call.
    """
    images = np.asarray(images)
    flat = np.ascontiguousarray(images.reshape(len(images), int(np.prod(images.shape[1:]))))
    size = flat.shape[1] * flat.itemsize
    view = memoryview(flat.reshape(-1).view(np.uint8))
    return np.array(
        [hashlib.sha256(view[k : k + size]).digest() for k in range(0, size * flat.shape[0], size)],
        dtype="S32",
    )


_BANDS = 4  # 16-bit bands: buckets hold ~N / 65536 random hashes each


def _probe_masks(radius: int) -> np.ndarray:
    """Every 16-bit mask with at most ``radius`` bits set (1 + 16 + 120 + ... of them)."""
    masks = [0]
    for r in range(1, radius + 1):
        masks += [sum(1 << b for b in bits) for bits in itertools.combinations(range(16), r)]
    return np.array(masks, dtype=np.uint64)


def near_pairs(
    left: np.ndarray, right: np.ndarray, max_distance: int, *, same: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All index pairs (i, j) with ``hamming(left[i], right[j]) <= max_distance``, each once.

    The 64 bits are cut into 4 bands of 16. Two hashes at most ``d`` bits apart differ in at most
    ``r = d // 4`` bits on at least one band (pigeonhole: otherwise they would differ in
    ``4 (r + 1) > d`` bits), so probing, per band, every key within ``r`` flips of each left key
    among the sorted right keys finds every pair (multi-probe LSH, exact). With ``same=True``
    ``left`` and ``right`` are the same array and only pairs ``i < j`` are kept.

    Returns
    -------
    i, j, distance : np.ndarray
        int64 arrays of equal length.
    """
    left, right = np.asarray(left, np.uint64), np.asarray(right, np.uint64)
    found = [np.zeros(0, dtype=np.int64)]
    masks = _probe_masks(max_distance // _BANDS).astype(np.int64)
    for band in range(_BANDS):
        key_r = ((right >> np.uint64(16 * band)) & np.uint64(0xFFFF)).astype(np.int64)
        key_l = ((left >> np.uint64(16 * band)) & np.uint64(0xFFFF)).astype(np.int64)
        # 16-bit keys: a counting sort gives every bucket's [start, start + size) directly
        order = np.argsort(key_r, kind="stable")
        size = np.bincount(key_r, minlength=1 << 16)
        start = np.cumsum(size) - size
        for mask in masks:
            probe = key_l ^ mask
            counts = size[probe]
            i = np.repeat(np.arange(left.size), counts)
            offsets = np.arange(i.size) - np.repeat(np.cumsum(counts) - counts, counts)
            j = order[np.repeat(start[probe], counts) + offsets]
            keep = hamming_distance(left[i], right[j]) <= max_distance
            if same:
                keep &= i < j
            found.append(i[keep] * np.int64(right.size) + j[keep])
    pairs = np.unique(np.concatenate(found))
    i, j = pairs // max(right.size, 1), pairs % max(right.size, 1)
    return i, j, hamming_distance(left[i], right[j])


def _label_mass(inverse: np.ndarray, labels: np.ndarray, n_hashes: int, k: int) -> np.ndarray:
    """(n_hashes, k) count of samples per (unique hash, label)."""
    return np.bincount(inverse * k + labels, minlength=n_hashes * k).reshape(n_hashes, k).astype(np.float64)


def _neighbour_mass(
    pairs: tuple[np.ndarray, np.ndarray, np.ndarray],
    mass_left: np.ndarray,
    mass_right: np.ndarray,
    scale: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Closeness-weighted label mass of each side's neighbours: (left rows, right rows)."""
    i, j, dist = pairs
    weight = (1.0 - dist / (scale + 1.0))[:, None]
    to_left = np.zeros_like(mass_left)
    to_right = np.zeros_like(mass_right)
    np.add.at(to_left, i, weight * mass_right[j])
    np.add.at(to_right, j, weight * mass_left[i])
    return to_left, to_right


class DuplicateDetector(Defense):
    """Flag samples that have an exact or near duplicate carrying a different label.

    Parameters
    ----------
    max_distance : int
        Largest pHash Hamming distance (0..12 bits) that still counts as a near duplicate. The
        default 6 absorbs noise of +-8 grey levels, a brightness shift of 20 levels and JPEG
        quality 75 on CIFAR-10 (measured: at most 6, 6 and 2 bits), while two random CIFAR-10
        images differ in about 32 bits (1st percentile 20). It finds 93% of the chapter's
        pattern-backdoor copies (concat) next to their originals, and only 29 samples (0.06%)
        of the clean CIFAR-10 training set are in such a cross-label pair. Hashes have exactly
        31 bits set, so distances are even. Search cost grows with ``max_distance // 4`` (about
        0.4 s at 4-7, 2.5 s at 8-11, 10 s at 12 on 50k hashes).
    flag_same_label : bool
        Also flag duplicates that share their label (redundant data rather than poison).

    Notes
    -----
    ``scores_`` is the number of conflicting duplicates of each sample (in the dataset, plus in
    ``trusted`` when given), each weighted by its closeness ``1 - distance / (max_distance + 1)``
    (1 for identical hashes). Both members of a conflicting pair are flagged: the pair alone
    does not say which label is the wrong one, so on a "copy and relabel" attack precision is
    about 0.5 unless a trusted set holds the originals. A sample that near-duplicates a trusted
    sample with another label is flagged on its own.
    """

    name = "duplicates"
    space = "pixels"
    needs_model = False
    needs_trusted = False
    paper = (
        "Zauner, Implementation and Benchmarking of Perceptual Image Hash Functions, MSc thesis, 2010; "
        "Indyk & Motwani, Approximate Nearest Neighbors, STOC 1998; Lv et al., Multi-Probe LSH, VLDB 2007"
    )

    def __init__(self, *, max_distance: int = 6, flag_same_label: bool = False) -> None:
        max_distance = check_positive_int(max_distance, "max_distance", minimum=0)
        if max_distance > 12:
            raise ValueError(f"max_distance must be in [0, 12] bits, got {max_distance}")
        if not isinstance(flag_same_label, bool):
            raise ValueError(f"flag_same_label must be True or False, got {flag_same_label!r}")
        self.max_distance = int(max_distance)
        self.flag_same_label = flag_same_label

    def _fit(self, context: ScanContext) -> None:
        dataset, trusted = context.dataset, context.trusted
        k, y = dataset.num_classes, dataset.y
        hashes, inverse = np.unique(perceptual_hash(dataset.x), return_inverse=True)
        mass = _label_mass(inverse, y, hashes.size, k)
        pairs = near_pairs(hashes, hashes, self.max_distance, same=True)
        to_left, to_right = _neighbour_mass(pairs, mass, mass, self.max_distance)
        near = to_left + to_right + mass  # identical hashes are neighbours at weight 1
        own = near[inverse, y] - 1.0  # minus the sample itself
        conflict = near[inverse].sum(axis=1) - near[inverse, y]
        trusted_conflict = np.zeros(len(dataset))
        if trusted is not None:
            t_hashes, t_inverse = np.unique(perceptual_hash(trusted.x), return_inverse=True)
            t_mass = _label_mass(t_inverse, trusted.y, t_hashes.size, k)
            cross = near_pairs(hashes, t_hashes, self.max_distance)
            from_trusted, _ = _neighbour_mass(cross, np.zeros_like(mass), t_mass, self.max_distance)
            trusted_conflict = from_trusted[inverse].sum(axis=1) - from_trusted[inverse, y]
        scores = conflict + trusted_conflict + (own if self.flag_same_label else 0.0)
        self.scores_ = scores
        self.flagged_ = scores > 1e-9
        self.details_ = self._details(dataset, near, inverse, own, conflict, trusted_conflict, pairs, mass)

    def _details(
        self,
        dataset: Dataset,
        near: np.ndarray,
        inverse: np.ndarray,
        own: np.ndarray,
        conflict: np.ndarray,
        trusted_conflict: np.ndarray,
        pairs: tuple[np.ndarray, np.ndarray, np.ndarray],
        mass: np.ndarray,
    ) -> dict[str, Any]:
        names, y, k = dataset.class_names, dataset.y, dataset.num_classes
        _, d_inverse, d_size = np.unique(pixel_digests(dataset.x), return_inverse=True, return_counts=True)
        same_pixels_label = np.bincount(d_inverse * k + y)[d_inverse * k + y]
        exact = d_size[d_inverse] > 1
        sizes = mass.sum(axis=1)
        near_pair_count = float((sizes[pairs[0]] * sizes[pairs[1]]).sum() + (sizes * (sizes - 1) / 2).sum())
        other = near[inverse] > 1e-9
        other[np.arange(y.size), y] = False
        by_pair = np.zeros((k, k), dtype=np.int64)
        np.add.at(by_pair, y, other)
        in_conflict = conflict > 1e-9
        return {
            "max_distance": self.max_distance,
            "exact_duplicate_groups": int((d_size > 1).sum()),
            "exact_duplicate_samples": int(exact.sum()),
            "exact_conflicting_samples": int((d_size[d_inverse] > same_pixels_label).sum()),
            "near_duplicate_pairs": int(near_pair_count),
            "same_label_duplicate_samples": int((own > 1e-9).sum()),
            "conflicting_samples": int(in_conflict.sum()),
            "trusted_conflicting_samples": int((trusted_conflict > 1e-9).sum()),
            "flagged": int(self.flagged_.sum()),
            "per_class": {
                names[c]: {
                    "conflicting": int(in_conflict[y == c].sum()),
                    "trusted_conflicting": int((trusted_conflict[y == c] > 1e-9).sum()),
                    "same_label_duplicates": int((own[y == c] > 1e-9).sum()),
                }
                for c in range(k)
            },
            "conflicts_by_label_pair": [
                {"label": names[a], "other_label": names[b], "samples": int(by_pair[a, b])}
                for a, b in zip(*np.nonzero(by_pair), strict=True)
            ],
        }
