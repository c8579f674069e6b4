#!/usr/bin/env bash
# Installs what the browser tests need: Debian's chromium (when /usr/bin/chromium is missing) and
# playwright-core from npm, pinned in tests/browser/package-lock.json. (`npx playwright install`
# downloads browser builds from outside the package registries, so it is never used.)
# Usage: scripts/install-browser.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [ ! -x /usr/bin/chromium ]; then
  apt-get update
  DEBIAN_FRONTEND=noninteractive apt-get install -y chromium
fi
npm ci --prefix tests/browser --ignore-scripts --no-audit --no-fund
