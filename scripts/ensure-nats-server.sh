#!/usr/bin/env bash
# Finds nats-server and prints its path. When it is missing and we are root
# with apt-get, installs Debian's package; otherwise says how to install it.
# Used by `npm start` (through the engine), the tests and .ci/run.
set -euo pipefail

find_it() {
  if [ -n "${ACH_NATS_SERVER:-}" ] && [ -x "$ACH_NATS_SERVER" ]; then echo "$ACH_NATS_SERVER"; return 0; fi
  if command -v nats-server >/dev/null 2>&1; then command -v nats-server; return 0; fi
  for p in /usr/sbin/nats-server /usr/local/bin/nats-server /usr/bin/nats-server; do
    if [ -x "$p" ]; then echo "$p"; return 0; fi
  done
  return 1
}

if find_it; then exit 0; fi

if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "nats-server not found: installing Debian's nats-server package" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq nats-server >&2
  # The package enables a systemd unit on port 4222; the engine runs its own
  # server there, so switch the unit off again where systemd is running.
  if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
    systemctl disable --now nats-server >/dev/null 2>&1 || true
  fi
  if find_it; then exit 0; fi
fi

cat >&2 <<'MSG'
nats-server was not found (looked at $ACH_NATS_SERVER, PATH, /usr/sbin, /usr/local/bin, /usr/bin).
Install it, then run the command again:
  Debian/Ubuntu:  sudo apt-get install -y nats-server
  other systems:  https://docs.nats.io/running-a-nats-service/introduction/installation
or point ACH_NATS_SERVER at the binary, or set NATS_URL to use a server you run yourself.
MSG
exit 1
