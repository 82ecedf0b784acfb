# shellcheck shell=bash
# Sourced by tests/conformance/secrets.sh and tests/bench/scan.sh: installs the peer scanners
# into $PEERS_DIR (never the repository): secretlint with its recommended preset from npm,
# detect-secrets and kingfisher-bin from PyPI. Skips what is already there.
install_peers() {
  mkdir -p "$PEERS_DIR"
  if [ ! -x "$PEERS_DIR/npm/node_modules/.bin/secretlint" ]; then
    echo "installing secretlint + @secretlint/secretlint-rule-preset-recommend (npm) into $PEERS_DIR/npm" >&2
    mkdir -p "$PEERS_DIR/npm"
    (cd "$PEERS_DIR/npm" && { [ -f package.json ] || npm init -y >/dev/null; } &&
      npm install --no-audit --no-fund --silent secretlint @secretlint/secretlint-rule-preset-recommend >/dev/null)
  fi
  if [ ! -x "$PEERS_DIR/venv/bin/detect-secrets" ] || [ ! -x "$PEERS_DIR/venv/bin/kingfisher" ]; then
    echo "installing detect-secrets + kingfisher-bin (PyPI) into $PEERS_DIR/venv" >&2
    [ -x "$PEERS_DIR/venv/bin/pip" ] || python3 -m venv "$PEERS_DIR/venv"
    "$PEERS_DIR/venv/bin/pip" install --quiet detect-secrets kingfisher-bin
  fi
}
