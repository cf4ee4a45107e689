#!/usr/bin/env bash
# Finds (or installs) a NATS binary and prints its path. Used by `npm start`
# (through the engine), the tests and .ci/run.
#
#   ensure-nats-server.sh             the server the engine runs: $ACH_NATS_SERVER, else the
#                                     newest one found (PATH, /usr/sbin, …, the reference build
#                                     in the cache); when there is none: the reference release
#                                     built with Go, else Debian's package (as root with apt)
#   ensure-nats-server.sh reference   the pinned reference release (scripts/nats-versions.env),
#                                     built once with `go install` into the cache
#   ensure-nats-server.sh floor       Debian's package, the oldest supported server
#   ensure-nats-server.sh cli         the pinned `nats` CLI, built once with `go install`
#   --no-install (after the word)     print what is there; install nothing, exit 1 if missing
#
# The cache is $ACH_TOOLS_DIR, default ${XDG_CACHE_HOME:-~/.cache}/achd.
set -euo pipefail
# ACH_NATS_SERVER answers at once, with shell builtins only (a caller may run us with a bare PATH).
if [ "${1:-default}" = "default" ] && [ -n "${ACH_NATS_SERVER:-}" ]; then
  if [ -x "$ACH_NATS_SERVER" ]; then echo "$ACH_NATS_SERVER"; exit 0; fi
  echo "ACH_NATS_SERVER=$ACH_NATS_SERVER is not an executable file; point it at a nats-server binary, or unset it" >&2
  exit 1
fi
here="$(cd "${BASH_SOURCE[0]%/*}" && pwd)"
# shellcheck source=nats-versions.env
. "$here/nats-versions.env"

what="${1:-default}"
install=1
[ "${2:-}" = "--no-install" ] && install=0
cache="${ACH_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/achd}"
ref_bin="$cache/nats-server-$NATS_SERVER_REFERENCE/nats-server"
cli_bin="$cache/nats-$NATS_CLI_VERSION/nats"

say() { echo "$*" >&2; }

go_bin() {
  if command -v go >/dev/null 2>&1; then command -v go; return 0; fi
  [ -x /usr/local/go/bin/go ] && { echo /usr/local/go/bin/go; return 0; }
  return 1
}

# go_build <module@version> <binary path>: `go install` into a temp folder, then
# an atomic rename; a lock makes concurrent callers (test workers) build once.
go_build() {
  local mod="$1" out="$2" go tmp
  go="$(go_bin)" || return 1
  mkdir -p "$(dirname "$out")"
  (
    flock 9
    [ -x "$out" ] && exit 0
    say "building $mod with $("$go" version | cut -d' ' -f3) (once; it is cached in $(dirname "$out"))"
    tmp="$(mktemp -d "$(dirname "$out")/.build.XXXXXX")"
    trap 'rm -rf "$tmp"' EXIT
    CGO_ENABLED=0 GOBIN="$tmp" GOFLAGS=-mod=mod "$go" install "$mod" >&2
    mv "$tmp/$(basename "$out")" "$out"
  ) 9>"$out.lock"
  [ -x "$out" ]
}

version_of() { "$1" --version 2>/dev/null | grep -oE '[0-9]+\.[0-9]+\.[0-9]+' | head -1; }

# Every nats-server on this machine, one per line.
candidates() {
  {
    command -v nats-server 2>/dev/null || true
    for p in /usr/sbin/nats-server /usr/local/bin/nats-server /usr/bin/nats-server "$ref_bin"; do
      [ -x "$p" ] && echo "$p"
    done
  } | awk '!seen[$0]++'
}

newest() {
  local p v
  while read -r p; do
    [ -n "$p" ] || continue
    v="$(version_of "$p")" && [ -n "$v" ] && printf '%s %s\n' "$v" "$p"
  done < <(candidates) | sort -V | tail -1 | cut -d' ' -f2-
}

apt_install() {
  [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1 || return 1
  say "installing Debian's nats-server package"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq nats-server >&2
  # The package enables a systemd unit on port 4222; the engine runs its own
  # server there, so switch the unit off again where systemd is running.
  if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
    systemctl disable --now nats-server >/dev/null 2>&1 || true
  fi
}

debian_server() {
  local p
  for p in /usr/sbin/nats-server /usr/bin/nats-server; do
    [ -x "$p" ] && { echo "$p"; return 0; }
  done
  return 1
}

how_to() {
  cat >&2 <<MSG
$1
Install one, then run the command again:
  with Go:        go install github.com/nats-io/nats-server/v2@$NATS_SERVER_REFERENCE   (the reference release)
  Debian/Ubuntu:  sudo apt-get install -y nats-server                              (2.9.10 on bookworm, the oldest supported)
  other systems:  https://docs.nats.io/running-a-nats-service/introduction/installation
or point ACH_NATS_SERVER at the binary, or set NATS_URL to use a server you run yourself.
MSG
  exit 1
}

case "$what" in
  default)
    found="$(newest)"
    [ -n "$found" ] && { echo "$found"; exit 0; }
    [ "$install" = 1 ] || exit 1
    if go_build "github.com/nats-io/nats-server/v2@$NATS_SERVER_REFERENCE" "$ref_bin"; then echo "$ref_bin"; exit 0; fi
    apt_install && found="$(newest)" && [ -n "$found" ] && { echo "$found"; exit 0; }
    how_to "nats-server was not found (looked at PATH, /usr/sbin, /usr/local/bin, /usr/bin and $ref_bin)."
    ;;
  reference)
    [ -x "$ref_bin" ] && { echo "$ref_bin"; exit 0; }
    [ "$install" = 1 ] || exit 1
    go_bin >/dev/null || how_to "the reference nats-server $NATS_SERVER_REFERENCE is built with Go, and go was not found."
    go_build "github.com/nats-io/nats-server/v2@$NATS_SERVER_REFERENCE" "$ref_bin" || how_to "go install github.com/nats-io/nats-server/v2@$NATS_SERVER_REFERENCE failed (see above)."
    echo "$ref_bin"
    ;;
  floor)
    debian_server && exit 0
    [ "$install" = 1 ] || exit 1
    apt_install && debian_server && exit 0
    how_to "Debian's nats-server package ($NATS_SERVER_FLOOR) is not installed, and apt-get as root is not available."
    ;;
  cli)
    [ -x "$cli_bin" ] && { echo "$cli_bin"; exit 0; }
    [ "$install" = 1 ] || exit 1
    go_bin >/dev/null || { say "the nats CLI $NATS_CLI_VERSION is built with Go, and go was not found."; exit 1; }
    go_build "github.com/nats-io/natscli/nats@$NATS_CLI_VERSION" "$cli_bin" || { say "go install github.com/nats-io/natscli/nats@$NATS_CLI_VERSION failed (see above)."; exit 1; }
    echo "$cli_bin"
    ;;
  *)
    say "usage: ensure-nats-server.sh [default|reference|floor|cli] [--no-install]"
    exit 2
    ;;
esac
