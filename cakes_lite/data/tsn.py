"""TSN segment sampling: which frames of a video a clip of T frames is made of.

A video of ``num_frames`` frames is cut into T equal segments and one frame is taken from each
(Wang et al., Temporal Segment Networks, 2016), as the Something-Something code of TSN / TSM /
GST / CAKES does. Frame numbers are **1-based**, like the file names ``00001.jpg …``.

* training: a random frame inside each segment of ``avg = num_frames // T`` frames
  (frames after ``T · avg`` are never drawn, as in the official code);
* evaluation: the frame at the centre of each segment, ``int(tick / 2 + tick · t)`` with
  ``tick = num_frames / T``;
* multi-clip evaluation: clip c of n shifts the position inside each segment to
  ``tick · (t + (c + ½) / n)`` (n = 1 is the centre above).

Videos shorter than T frames: the official code then repeats frame 1 for every segment (and,
at evaluation, also when ``num_frames == T``). Here they get the evaluation formula, which
repeats frames evenly (e.g. 3 frames, T = 8: 1 1 1 2 2 3 3 3) and takes every frame once when
``num_frames == T`` — the only departure from the official arithmetic.
"""

from __future__ import annotations

import numpy as np


def _check(num_frames: int, segments: int) -> None:
    if int(num_frames) < 1 or int(segments) < 1:
        raise ValueError(f"TSN sampling: expected num_frames >= 1 and segments >= 1, got "
                         f"{num_frames} and {segments}")


def tsn_train_indices(num_frames: int, segments: int, rng: np.random.Generator) -> np.ndarray:
    """1-based frame numbers of a training clip: one random frame per segment.

    Args:
        num_frames: frames of the video (the list file's count).
        segments: T, frames of the clip.
        rng: numpy Generator (all randomness comes from it).

    Returns:
        (T,) int64, non-decreasing, in [1, num_frames].
    """
    _check(num_frames, segments)
    avg = num_frames // segments  # frames per segment
    if avg == 0:  # shorter than T: no randomness to draw (see the module docstring)
        return tsn_clip_indices(num_frames, segments)
    # frame = avg · t + U{0, …, avg − 1}, t = 0 … T − 1
    return np.arange(segments, dtype=np.int64) * avg + rng.integers(avg, size=segments) + 1


def tsn_clip_indices(num_frames: int, segments: int, clip: int = 0,
                     clips: int = 1) -> np.ndarray:
    """1-based frame numbers of evaluation clip ``clip`` of ``clips``.

    One clip: the centre frame of each segment. Several: each segment's position shifted to
    ``(clip + ½) / clips`` of the segment, so the clips interleave evenly.

    Returns:
        (T,) int64, non-decreasing, in [1, num_frames].
    """
    _check(num_frames, segments)
    if not 0 <= clip < clips:
        raise ValueError(f"clip: expected 0 <= clip < clips, got clip={clip}, clips={clips}")
    tick = num_frames / float(segments)
    # frame = int(tick · (c + ½) / n + tick · t) + 1; n = 1: int(tick / 2 + tick · t) + 1,
    # summed in this order so that n = 1 rounds exactly as the official code does
    pos = tick * (clip + 0.5) / clips + tick * np.arange(segments)
    return np.minimum(pos.astype(np.int64), num_frames - 1) + 1
