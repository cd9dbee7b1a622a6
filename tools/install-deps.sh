#!/usr/bin/env bash
# Installs every Debian 12 package Kinora needs to build, test and package.
# Idempotent and non-interactive; run as root (or through sudo).
set -euo pipefail

packages=(
  # build
  meson ninja-build gcc g++ pkg-config git
  libglib2.0-dev libglib2.0-bin libjson-glib-dev
  libopenblas-openmp-dev libopenblas-dev libomp-dev
  # desktop app
  libgtk-4-dev libadwaita-1-dev
  libgtk-4-media-gstreamer libgdk-pixbuf-2.0-dev librsvg2-common
  # media
  libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev
  gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad
  gstreamer1.0-plugins-ugly gstreamer1.0-libav gstreamer1.0-gl gstreamer1.0-tools
  libgif-dev
  # translations, data validators, packaging
  gettext desktop-file-utils appstream flatpak-builder
  # tests: headless display, tokenizer reference, fuzzing
  xvfb xauth sentencepiece clang libfuzzer-14-dev libclang-rt-14-dev
  python3
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#packages[@]} packages present"
  exit 0
fi

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
echo "install-deps: installing ${#missing[@]} packages: ${missing[*]}"
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "install-deps: done"
