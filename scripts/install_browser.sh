#!/usr/bin/env bash
# Installs Debian's chromium for the real-browser app test when we may (root + apt-get).
# Elsewhere the browser test skips itself with a message saying what is missing.
set -u
if [ -x /usr/bin/chromium ]; then exit 0; fi
if [ "$(id -u)" != "0" ] || ! command -v apt-get >/dev/null; then
  echo "install_browser: not root or no apt-get; the browser test will be skipped"; exit 0
fi
echo "install_browser: apt-get install chromium (for the real-browser app test)"
(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
  || echo "install_browser: chromium install failed; the browser test will be skipped"
