#!/usr/bin/env bash
# Installs the distribution packages the project builds and tests against.
# Idempotent: packages already installed are skipped, and apt is only asked
# when something is missing. Run as root (or through sudo).
set -euo pipefail

PACKAGES=(
  # build tools
  pkg-config clang libclang-dev curl ca-certificates
  # GStreamer 1.22: development files, plugins, RTSP server library
  libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev libgstreamer-plugins-bad1.0-dev
  gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad
  gstreamer1.0-plugins-ugly gstreamer1.0-libav gstreamer1.0-tools gstreamer1.0-rtsp
  libgstrtspserver-1.0-dev
  # OpenCV 4.6 (used through the opencv crate: core, imgproc, imgcodecs, video)
  libopencv-dev
  # servers the tests start on loopback in temporary directories
  postgresql mosquitto
  # headless browser for the console's browser tests (driven over WebDriver)
  chromium chromium-driver
  # fonts for the synthetic plate generator (licences in models/README.md)
  fonts-dejavu-core fonts-dejavu-extra fonts-liberation2 fonts-freefont-ttf fonts-roboto-unhinted
  # PDF tools the evidence-package tests read summary.pdf with (pdfinfo, pdftotext, pdfimages)
  poppler-utils
  # systemd-analyze, which checks deploy/systemd's units in the tests
  systemd
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "setup-system: all distribution packages present"
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
echo "setup-system: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"

# The distribution starts system services on install; the tests start their
# own instances and never use these, so leave them stopped where we can.
for svc in postgresql mosquitto; do
  if command -v systemctl >/dev/null 2>&1; then $SUDO systemctl disable --now "$svc" >/dev/null 2>&1 || true; fi
done
