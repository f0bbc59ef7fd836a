#!/usr/bin/env bash
# Type-checks web/tickcast.js (JSDoc, `tsc --checkJs`, strict) and checks that the
# committed web/tickcast.d.ts is what tsc generates from it. TypeScript is pinned to one
# version so the generated file does not change under a new release; it comes from the npm
# registry through npx and is not a dependency of the package.
set -euo pipefail
cd "$(dirname "$0")"
TSC=(npx -y -p typescript@5.9.3 tsc)
"${TSC[@]}" -p tsconfig.json
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
"${TSC[@]}" -p tsconfig.json --noEmit false --declaration --emitDeclarationOnly --outDir "$out"
if ! diff -u tickcast.d.ts "$out/tickcast.d.ts"; then
  echo "web/tickcast.d.ts is out of date: regenerate it with" >&2
  echo "  ${TSC[*]} -p web/tsconfig.json --noEmit false --declaration --emitDeclarationOnly --outDir web" >&2
  exit 1
fi
echo "web: types check, tickcast.d.ts up to date"
