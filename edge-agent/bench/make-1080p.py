"""Writes raw 1920x1080 BGR frames of a recording, upscaled, to stdout,
played forwards and backwards LOOPS times (no jump at the seams, each seam
frame shown twice), for `cameras.sh` to encode into a 1080p25 H.264 test
camera. Holds the upscaled frames in memory (about 1.4 GB for the shared
recording). Python + OpenCV from .deps/pyvision (installed by `make
setup`)."""
import sys

import cv2

cap = cv2.VideoCapture(sys.argv[1])
frames = []
while True:
    ok, f = cap.read()
    if not ok:
        break
    frames.append(cv2.resize(f, (1920, 1080), interpolation=cv2.INTER_CUBIC).tobytes())
if not frames:
    sys.exit(f"no frames in {sys.argv[1]}")
for i in range(int(sys.argv[2])):
    for b in frames if i % 2 == 0 else frames[::-1]:
        sys.stdout.buffer.write(b)
