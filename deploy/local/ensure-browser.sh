#!/usr/bin/env bash
# Make sure the browser tests have a browser: Debian's Chromium (Playwright drives it through
# executable_path; Playwright's own browser download cannot work here) and a font to render with.
# With CHROMIUM_PATH set, only checks that one. Otherwise installs the Debian packages with apt-get
# when /usr/bin/chromium is missing (root only), and fails with a clear line when it cannot.
# Already installed, it costs one `chromium --version`.
set -euo pipefail

PACKAGES=(chromium fonts-dejavu-core)
CHROMIUM=${CHROMIUM_PATH:-/usr/bin/chromium}

runs() { "$CHROMIUM" --headless --no-sandbox --version >/dev/null 2>&1; }

if [ -n "${CHROMIUM_PATH:-}" ]; then
  if [ -x "$CHROMIUM" ] && runs; then exit 0; fi
  echo "error: CHROMIUM_PATH=$CHROMIUM is not a Chromium that runs; unset it to use Debian's (apt-get install chromium)" >&2
  exit 1
fi

if [ -x "$CHROMIUM" ] && runs && [ -d /usr/share/fonts/truetype/dejavu ]; then exit 0; fi

if [ "$(id -u)" -ne 0 ]; then
  echo "error: $CHROMIUM is missing or broken and installing it needs root: run 'sudo apt-get install -y ${PACKAGES[*]}' or set CHROMIUM_PATH" >&2
  exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "error: $CHROMIUM is missing and there is no apt-get to install it; install Chromium and set CHROMIUM_PATH" >&2
  exit 1
fi

echo "installing ${PACKAGES[*]} (apt-get)" >&2
export DEBIAN_FRONTEND=noninteractive
if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${PACKAGES[@]}"; } >/tmp/ensure-browser-apt.log 2>&1; then
  tail -n 20 /tmp/ensure-browser-apt.log >&2
  echo "error: apt-get could not install ${PACKAGES[*]} (log above, whole log in /tmp/ensure-browser-apt.log); the browser tests need $CHROMIUM" >&2
  exit 1
fi
if ! runs; then
  echo "error: $CHROMIUM was installed but does not run: $("$CHROMIUM" --headless --no-sandbox --version 2>&1 | tail -n 1)" >&2
  exit 1
fi
echo "installed $("$CHROMIUM" --version)" >&2
