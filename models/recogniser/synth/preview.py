"""Writes a PNG grid of synthetic plate crops (as the camera made them, and as the model sees them).

  python -m synth.preview OUT.png [FIRST_SEED]
"""

import sys

import cv2
import numpy as np
from PIL import Image

from .render import make_sample


def main():
    out = sys.argv[1]
    first = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    tiles = []
    for i in range(48):
        img, _ = make_sample(first + i)
        g = cv2.cvtColor(cv2.resize(img, (128, 64), interpolation=cv2.INTER_LINEAR), cv2.COLOR_RGB2GRAY)
        tiles.append(np.concatenate([cv2.resize(img, (128, 64), interpolation=cv2.INTER_NEAREST),
                                     np.repeat(g[..., None], 3, 2)], axis=0))
    rows = [np.concatenate(tiles[r * 8:(r + 1) * 8], axis=1) for r in range(6)]
    Image.fromarray(np.concatenate(rows, axis=0)).save(out)
    print("wrote", out)


if __name__ == "__main__":
    main()
