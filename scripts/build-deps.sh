#!/usr/bin/env bash
# Build tools beyond Rust: libjpeg-turbo (the resize function's JPEG codec) is built
# from its vendored source with cmake and nasm. Installs them from Debian when missing.
set -euo pipefail
if command -v cmake >/dev/null && command -v nasm >/dev/null; then
  exit 0
fi
sudo=""
[ "$(id -u)" = 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get install -y -q cmake nasm >/dev/null \
  || { $sudo apt-get update -q >/dev/null && $sudo apt-get install -y -q cmake nasm >/dev/null; }
