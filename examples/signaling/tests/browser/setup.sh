#!/usr/bin/env bash
# Installs what the browser test (call.test.mjs, run by ../browser.rs) needs on a Debian
# machine, as root: Debian's Chromium and ChromeDriver, and playwright-core from npm into
# ./node_modules (from package-lock.json). Node.js 20 or later must already be installed.
# Playwright's own browser download is not used: the test drives /usr/bin/chromium.
set -euo pipefail
cd "$(dirname "$0")"

if [ ! -x /usr/bin/chromium ]; then
  apt-get update
  DEBIAN_FRONTEND=noninteractive apt-get install -y chromium chromium-driver
fi
/usr/bin/chromium --version

if ! command -v node >/dev/null; then
  echo "setup.sh: Node.js 20 or later is needed (node not found)" >&2
  exit 1
fi
node --version
npm ci --no-audit --no-fund
