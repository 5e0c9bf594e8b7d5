"""The demo style network's target: a warm "catalogue" look, defined in numpy.

1. Auto white balance and exposure: each channel minus its mean (gray world), divided by the
   image's overall standard deviation, so every photo starts from the same neutral exposure.
2. Warm grade: a colour matrix that lifts red, keeps green and cools nothing, around a warm
   cream mid-tone.
3. A mild S-shaped contrast curve and a gentle gamma.

Step 1 makes the look independent of a photo's per-channel offsets and overall gain, the
same invariance TransformerNet's instance normalisation has, so the network can learn it
exactly in principle. No vignette: a fully convolutional network cannot know where a big
photo's centre is.
"""

from __future__ import annotations

import numpy as np

MID_TONE = np.array([0.56, 0.50, 0.43])
"""Where a channel's mean lands: a warm cream."""
SPREAD = 0.21
"""The standard deviation a normalised photo is given before the grade."""
WARM = np.array(
    [
        [1.08, 0.10, -0.02],
        [0.02, 1.00, 0.02],
        [-0.04, 0.06, 0.86],
    ]
)
CONTRAST = 0.35
"""How much of the smoothstep S-curve is mixed in."""
GAMMA = 0.92


def catalogue_look(image: np.ndarray) -> np.ndarray:
    """uint8 RGB (H, W, 3) -> the same photo in the catalogue look, uint8 RGB."""
    x = image.astype(np.float64) / 255.0
    normalised = (x - x.mean(axis=(0, 1))) / max(float(x.std()), 1e-3)
    graded = np.clip(MID_TONE + SPREAD * normalised @ WARM.T, 0.0, 1.0)
    curved = (1 - CONTRAST) * graded + CONTRAST * graded * graded * (3 - 2 * graded)
    return np.round(255.0 * curved**GAMMA).astype(np.uint8)
