#!/usr/bin/env bash
# Install what tests/test_browser.py needs: Debian's chromium (/usr/bin/chromium) and Playwright's
# Python package (the driver only: Playwright's own browser download does not work here, so the test
# launches Debian's chromium with executable_path=/usr/bin/chromium). Idempotent: installs only what
# is missing and says what it did. Run it with the project's venv active (.ci/run does).
set -euo pipefail

log() { echo "[install_browser] $*"; }
start=$(date +%s)

# ---- chromium (Debian package) --------------------------------------------------------------
if command -v chromium >/dev/null 2>&1; then
  log "chromium already installed: $(chromium --version 2>/dev/null || echo '?')"
else
  SUDO=""
  if [ "$(id -u)" != "0" ]; then
    if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
      log "ERROR: not root and no sudo: cannot apt-get install chromium"; exit 1
    fi
  fi
  log "installing Debian's chromium with apt-get"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null
  log "installed: $(chromium --version 2>/dev/null || echo 'chromium (version not printed)')"
fi

# ---- Playwright's Python package (no browser download) ----------------------------------------
if [ -z "${VIRTUAL_ENV:-}" ]; then
  log "WARNING: no virtual environment active; installing playwright for $(command -v python)"
fi
if python -c "import playwright.sync_api" >/dev/null 2>&1; then
  log "playwright already installed: $(python -m pip show playwright 2>/dev/null | sed -n 's/^Version: //p')"
else
  log "pip install playwright (the Python driver only; its browser download is never run)"
  PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 python -m pip install -q "playwright>=1.40"
  log "installed playwright $(python -m pip show playwright 2>/dev/null | sed -n 's/^Version: //p')"
fi

log "done in $(( $(date +%s) - start ))s (chromium: $(command -v chromium))"
