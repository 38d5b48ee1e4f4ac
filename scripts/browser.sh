#!/usr/bin/env bash
# Installs the browser the console test drives: Debian's Chromium and its
# ChromeDriver (packages chromium and chromium-driver: /usr/bin/chromium,
# /usr/bin/chromedriver), and a font with Hangul (fonts-noto-cjk) so the
# pages' Korean names render in screenshots, unless they are there. Needs root or sudo.
#
#   scripts/browser.sh install   install if needed, then print both versions
set -euo pipefail

case "${1:-}" in
  install)
    if ! [ -x /usr/bin/chromium ] || ! [ -x /usr/bin/chromedriver ] || ! [ -d /usr/share/fonts/opentype/noto ]; then
      sudo=""
      [ "$(id -u)" -eq 0 ] || sudo="sudo"
      echo "browser.sh: installing Debian's chromium, chromium-driver and fonts-noto-cjk" >&2
      export DEBIAN_FRONTEND=noninteractive
      $sudo apt-get install -y -q chromium chromium-driver fonts-noto-cjk >/dev/null \
        || { $sudo apt-get update -q >/dev/null && $sudo apt-get install -y -q chromium chromium-driver fonts-noto-cjk >/dev/null; }
    fi
    /usr/bin/chromium --version
    /usr/bin/chromedriver --version
    ;;
  *)
    echo "usage: $0 install" >&2
    exit 2
    ;;
esac
