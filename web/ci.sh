#!/usr/bin/env bash
# What CI runs for the npm package in web/ (`repod`): works from a fresh clone, from any
# directory. Needs Node >= 20 with npm, cargo (to build the echo server the tests talk to),
# openssl (the wss test makes a throwaway CA) and tar.
#
#   1. npm ci: exactly what package-lock.json says.
#   2. cargo build --example echo_server: the tests start target/debug/examples/echo_server
#      (see test-support/echo.mjs; REPOD_ECHO_SERVER overrides the path).
#   3. node --test test/: the client against the real server (ws and wss), the package, and
#      in headless Chromium (DevTools protocol) a page that comes back online.
#   4. npm pack --dry-run: the tarball must hold exactly the files listed below, else fail.
#
# Exits non-zero on the first failure.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"

echo "== node $(node --version), npm $(npm --version)"

echo "== npm ci"
npm ci --no-audit --no-fund

echo "== cargo build --example echo_server"
(cd .. && cargo build --example echo_server)
if [ -z "${REPOD_ECHO_SERVER:-}" ]; then
  # Wherever cargo put it (CARGO_TARGET_DIR, .cargo/config.toml's build.target-dir...).
  target="$(cd .. && cargo metadata --format-version 1 --no-deps |
    node -e 'let s = ""; process.stdin.on("data", (d) => { s += d; }).on("end", () => console.log(JSON.parse(s).target_directory))')"
  export REPOD_ECHO_SERVER="$target/debug/examples/echo_server"
fi
test -x "$REPOD_ECHO_SERVER" || { echo "no echo server at $REPOD_ECHO_SERVER" >&2; exit 1; }

echo "== node --test test/"
node --test test/

echo "== npm pack --dry-run"
# npm adds package.json, README and LICENSE files whatever "files" says; nothing else may go in.
expected="LICENSE-APACHE
LICENSE-MIT
README.md
package.json
repod.d.ts
repod.js"
packed="$(npm pack --dry-run --json | node -e '
  let s = "";
  process.stdin.on("data", (d) => { s += d; }).on("end", () => {
    const [pkg] = JSON.parse(s);
    console.log(pkg.files.map((f) => f.path).sort().join("\n"));
  });
')"
if [ "$packed" != "$expected" ]; then
  echo "the tarball's files differ from what is intended:" >&2
  diff <(echo "$expected") <(echo "$packed") >&2 || true
  exit 1
fi
echo "$packed" | sed 's/^/  /'
echo "== web/ci.sh: PASS"
