"""Shared constants and preprocessing for the plate recogniser (training, export, eval).

The preprocessing here is the ONNX contract: grayscale, stretch-resize to 96x48
(W x H), x/255. Training pools are stored at 128x64 (POOL_W x POOL_H) and resampled to
the input size by the training augmentation. Keep it in one place so training, evaluation and the Rust reader agree.
"""

import cv2
import numpy as np

from synth.texts import ALPHABET, MAX_LEN, canonical  # noqa: F401

PAD = "_"
CLASSES = PAD + ALPHABET          # class 0 = pad
CHAR_TO_ID = {c: i for i, c in enumerate(CLASSES)}
IN_H, IN_W, IN_C = 48, 96, 1
POOL_H, POOL_W = 64, 128
SLOTS = MAX_LEN


def preprocess_rgb(img_rgb: np.ndarray, w: int = IN_W, h: int = IN_H) -> np.ndarray:
    """RGB uint8 HxWx3 -> uint8 h x w gray (before /255): the model's input."""
    g = cv2.cvtColor(img_rgb, cv2.COLOR_RGB2GRAY)
    return cv2.resize(g, (w, h), interpolation=cv2.INTER_LINEAR)


def encode(text: str) -> np.ndarray:
    ids = [CHAR_TO_ID[c] for c in text][:SLOTS]
    return np.array(ids + [0] * (SLOTS - len(ids)), np.int64)


def decode(ids) -> str:
    return "".join(CLASSES[i] for i in ids if i != 0)
