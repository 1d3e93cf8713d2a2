#!/usr/bin/env bash
# Installs Debian's chromium for the real-browser tests (the app, the notebooks in JupyterLab)
# when we may (root + apt-get).
# Elsewhere the browser tests skip themselves with a message saying what is missing.
set -u
if [ -x /usr/bin/chromium ]; then exit 0; fi
if [ "$(id -u)" != "0" ] || ! command -v apt-get >/dev/null; then
  echo "install_browser: not root or no apt-get; the browser tests will be skipped"; exit 0
fi
echo "install_browser: apt-get install chromium (for the real-browser tests)"
(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
  || echo "install_browser: chromium install failed; the browser tests will be skipped"
