#!/usr/bin/env bash
# Builds (or reuses from the cache) the binaries of aksup's real-Kubernetes test tier:
#   kube-apiserver, kube-controller-manager, kube-scheduler, kubectl  (k8s.io/kubernetes, pinned below)
#   etcd                                                            (Debian etcd-server or go.etcd.io/etcd/server/v3)
#   kwok                                                            (sigs.k8s.io/kwok/cmd/kwok, pinned below)
# Everything is built from Go modules in a helper module created in a cache directory outside the
# repository; nothing built here is committed. A warm run only checks the stamp files.
#
# Usage: scripts/testbed/build.sh [--print-bin-dir] [--help]
#   The bin directory is printed as the last line of stdout (alone with --print-bin-dir, which builds
#   nothing and fails when the cache is not complete).
# Environment:
#   AKSUP_TESTBED_CACHE  cache root (default: $HOME/.cache/aksup-testbed)
#   AKSUP_TESTBED_JOBS   go build -p parallelism (default: 2)
#   AKSUP_TESTBED_ETCD   "apt" (default: Debian's etcd-server, installed with apt-get when missing and
#                        running as root) or "source" (built from go.etcd.io/etcd/server/v3)
set -euo pipefail

KUBE_VERSION=v1.35.4          # newest 1.35 patch the Go module proxy serves (go list -m -versions k8s.io/kubernetes)
STAGING_VERSION=v0.35.4       # the matching k8s.io/* staging module version
KWOK_VERSION=v0.7.0           # kwok release with built-in stages (node-fast, pod-ready, pod-complete, pod-delete)
ETCD_VERSION=v3.6.16          # used when AKSUP_TESTBED_ETCD=source
# Debian's etcd-server (3.4.23 on bookworm) is accepted by kube-apiserver v1.35.4 (it only logs
# "RequestWatchProgress feature is not supported" and serves consistent lists from etcd); so it
# is the default. "source" builds etcd $ETCD_VERSION from the Go module proxy instead.
ETCD_MODE=${AKSUP_TESTBED_ETCD:-apt}
JOBS=${AKSUP_TESTBED_JOBS:-2}
CACHE_ROOT=${AKSUP_TESTBED_CACHE:-$HOME/.cache/aksup-testbed}
DIR="$CACHE_ROOT/$KUBE_VERSION"
BIN="$DIR/bin"

log() { echo "build.sh: $*" >&2; }
die() { echo "build.sh: error: $*" >&2; exit 1; }

print_only=false
case "${1:-}" in
  --print-bin-dir) print_only=true ;;
  --help|-h) sed -n '2,17p' "$0"; exit 0 ;;
  "") ;;
  *) die "unknown argument '$1' (use --print-bin-dir or --help)" ;;
esac

RECIPE=2                      # bump when the way a binary is built changes: invalidates the cache
KUBE_BINS=(kube-apiserver kube-controller-manager kube-scheduler kubectl)
kube_stamp="$DIR/stamps/kube-$KUBE_VERSION-r$RECIPE"
kwok_stamp="$DIR/stamps/kwok-$KWOK_VERSION-r$RECIPE"
case "$ETCD_MODE" in
  source) etcd_stamp="$DIR/stamps/etcd-source-$ETCD_VERSION-r$RECIPE" ;;
  *) etcd_stamp="$DIR/stamps/etcd-$ETCD_MODE-r$RECIPE" ;;
esac

complete() { [[ -f $kube_stamp && -f $kwok_stamp && -f $etcd_stamp ]]; }

if $print_only; then
  complete || die "test bed not built in $DIR; run scripts/testbed/build.sh first"
  echo "$BIN"
  exit 0
fi

command -v go >/dev/null || die "go is not installed; install Go >= 1.25"
mkdir -p "$BIN" "$DIR/stamps"
export GOFLAGS="-trimpath -mod=mod" CGO_ENABLED=0 GOTOOLCHAIN=local
LDFLAGS="-s -w"
# What the Kubernetes release build stamps into the binaries (`kubectl version`, the server's /version).
KUBE_LDFLAGS="$LDFLAGS"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  KUBE_LDFLAGS+=" -X $pkg.gitVersion=$KUBE_VERSION -X $pkg.gitMajor=$(echo "$KUBE_VERSION" | cut -d. -f1 | tr -d v)"
  KUBE_LDFLAGS+=" -X $pkg.gitMinor=$(echo "$KUBE_VERSION" | cut -d. -f2) -X $pkg.gitTreeState=clean"
  KUBE_LDFLAGS+=" -X $pkg.buildDate=1970-01-01T00:00:00Z"
done

# A helper module whose go.mod requires $1@$2 and replaces every k8s.io staging module the
# requirement's own go.mod points at ./staging/... with the published $3 version.
# Args: dir module version staging_version
make_helper_module() {
  local dir=$1 mod=$2 ver=$3 staging=$4 gomod
  rm -rf "$dir" && mkdir -p "$dir"
  gomod=$(cd "$dir" && go mod download -json "$mod@$ver" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')
  [[ -f $gomod ]] || die "could not download $mod@$ver from the Go module proxy"
  {
    echo "module aksup.invalid/testbed/$(basename "$dir")"
    echo
    echo "go $(go env GOVERSION | sed 's/^go//; s/^\([0-9]*\.[0-9]*\).*/\1/')"
    echo
    echo "require $mod $ver"
    echo
    # "k8s.io/api => ./staging/src/k8s.io/api" -> "replace k8s.io/api => k8s.io/api v0.35.4"
    if [[ -n $staging ]]; then
      sed -n 's#^[[:space:]]*\(k8s\.io/[^ ]*\) => \./staging/src/k8s\.io/.*$#replace \1 => \1 '"$staging"'#p' "$gomod" | sort -u
    fi
  } >"$dir/go.mod"
}

build_kube() {
  local mod="$DIR/src/kubernetes" t0=$SECONDS
  log "building ${KUBE_BINS[*]} at k8s.io/kubernetes $KUBE_VERSION (-p $JOBS)"
  make_helper_module "$mod" k8s.io/kubernetes "$KUBE_VERSION" "$STAGING_VERSION"
  grep -q '^replace k8s.io/api => k8s.io/api '"$STAGING_VERSION"'$' "$mod/go.mod" \
    || die "no staging replace lines generated for k8s.io/kubernetes $KUBE_VERSION"
  local pkgs=()
  for b in "${KUBE_BINS[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$b"); done
  (cd "$mod" && go get "${pkgs[@]/%/@$KUBE_VERSION}" >&2)
  (cd "$mod" && go build -p "$JOBS" -ldflags="$KUBE_LDFLAGS" -o "$BIN/" "${pkgs[@]}")
  for b in "${KUBE_BINS[@]}"; do [[ -x $BIN/$b ]] || die "$b was not built"; done
  "$BIN/kube-apiserver" --version | grep -qx "Kubernetes $KUBE_VERSION" \
    || die "kube-apiserver reports $("$BIN/kube-apiserver" --version), not $KUBE_VERSION"
  date -u +%FT%TZ >"$kube_stamp"
  log "kubernetes binaries built in $((SECONDS - t0))s"
}

build_kwok() {
  local mod="$DIR/src/kwok" t0=$SECONDS
  log "building kwok $KWOK_VERSION"
  make_helper_module "$mod" sigs.k8s.io/kwok "$KWOK_VERSION" ""
  (cd "$mod" && go get "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION" >&2)
  (cd "$mod" && go build -p "$JOBS" -ldflags="$LDFLAGS" -o "$BIN/kwok" sigs.k8s.io/kwok/cmd/kwok)
  "$BIN/kwok" --version >&2 || true
  date -u +%FT%TZ >"$kwok_stamp"
  log "kwok built in $((SECONDS - t0))s"
}

provide_etcd() {
  local t0=$SECONDS
  case "$ETCD_MODE" in
    apt)
      if ! command -v etcd >/dev/null; then
        if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
          log "installing Debian's etcd-server"
          DEBIAN_FRONTEND=noninteractive apt-get install -y -q etcd-server >&2 \
            || { apt-get update -q >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q etcd-server >&2; }
        fi
        command -v etcd >/dev/null \
          || die "etcd is not installed; run: apt-get install -y etcd-server (or use AKSUP_TESTBED_ETCD=source)"
      fi
      ln -sf "$(command -v etcd)" "$BIN/etcd"
      ;;
    source)
      local mod="$DIR/src/etcd"
      log "building etcd $ETCD_VERSION from go.etcd.io/etcd/server/v3"
      make_helper_module "$mod" go.etcd.io/etcd/server/v3 "$ETCD_VERSION" ""
      (cd "$mod" && go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION" >&2)
      (cd "$mod" && go build -p "$JOBS" -ldflags="$LDFLAGS" -o "$BIN/etcd" go.etcd.io/etcd/server/v3)
      ;;
    *) die "AKSUP_TESTBED_ETCD must be 'apt' or 'source', not '$ETCD_MODE'" ;;
  esac
  "$BIN/etcd" --version >&2
  date -u +%FT%TZ >"$etcd_stamp"
  log "etcd ($ETCD_MODE) ready in $((SECONDS - t0))s"
}

[[ -f $kube_stamp ]] || build_kube
[[ -f $etcd_stamp ]] || provide_etcd
[[ -f $kwok_stamp ]] || build_kwok
log "all test bed binaries are in $BIN"
echo "$BIN"
