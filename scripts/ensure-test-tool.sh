#!/usr/bin/env bash
# Finds (or installs) a tool the tests drive, and prints its path:
#
#   ensure-test-tool.sh chromium     the browser of the dashboard test (test/browser); $ACH_CHROMIUM first
#   ensure-test-tool.sh prometheus   the Prometheus server that scrapes /metrics in the tests (promtool comes
#                                    with it); $ACH_PROMETHEUS first
#
# Else the tool on PATH; when there is none, Debian's package (as root with apt-get). Exits 1 with
# what to do when it can find or install none.
set -euo pipefail
case "${1:-}" in
  # Chromium with its recommends (fonts among them: the tests take screenshots); Prometheus without (its web
  # console's libraries and documentation).
  chromium) var=ACH_CHROMIUM; names="chromium chromium-browser"; package=chromium; recommends="" ;;
  prometheus) var=ACH_PROMETHEUS; names="prometheus"; package=prometheus; recommends="--no-install-recommends" ;;
  *) echo "usage: ensure-test-tool.sh chromium|prometheus" >&2; exit 2 ;;
esac
given="${!var:-}"
if [ -n "$given" ]; then
  if [ -x "$given" ]; then echo "$given"; exit 0; fi
  echo "$var=$given is not an executable file; point it at a $1 binary, or unset it" >&2
  exit 1
fi

found() {
  for c in $names "/usr/bin/$package"; do
    if command -v "$c" >/dev/null 2>&1; then command -v "$c"; return 0; fi
  done
  return 1
}

found && exit 0
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing Debian's $package with apt-get" >&2
  # Non-interactive: CI has no terminal to answer a prompt.
  DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
  # shellcheck disable=SC2086 # $recommends is one option or none
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $recommends "$package" >&2
  found && exit 0
fi
cat >&2 <<HOW
No $1 found for the tests, and apt-get as root is not available. Install one:
  Debian/Ubuntu:  sudo apt-get install -y $package
or point $var at the binary.
HOW
exit 1
