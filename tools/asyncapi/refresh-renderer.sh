#!/bin/sh
# Refreshes the vendored AsyncAPI renderer (apps/consumers/static/consumers/vendor/asyncapi-react/) from npm, at the
# version pinned in package.json and package-lock.json here. Upgrade: bump the pin, `npm install`, run this, commit.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
dest="$here/../../apps/consumers/static/consumers/vendor/asyncapi-react"
(cd "$here" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
pkg="$here/node_modules/@asyncapi/react-component"
version=$(node -p "require('$pkg/package.json').version")
integrity=$(node -p "require('$here/package-lock.json').packages['node_modules/@asyncapi/react-component'].integrity")
rm -rf "$dest"
mkdir -p "$dest"
cp "$pkg/browser/standalone/index.js" "$dest/standalone.js"
cp "$pkg/browser/standalone/index.js.LICENSE.txt" "$dest/standalone.js.LICENSE.txt"
cp "$pkg/styles/default.min.css" "$pkg/LICENSE" "$dest/"
cat > "$dest/VENDORED.md" <<MD
# @asyncapi/react-component $version (vendored)

- Source: the npm registry, \`@asyncapi/react-component@$version\` (integrity \`$integrity\`), pinned in
  \`tools/asyncapi/package.json\`; copied by \`tools/asyncapi/refresh-renderer.sh\` (\`make asyncapi-renderer\`):
  \`browser/standalone/index.js\` as \`standalone.js\` (with its licence notes), \`styles/default.min.css\`. Nothing changed.
- License: Apache-2.0 (\`LICENSE\`, copied from the package).
- Used by \`apps/consumers/static/consumers/asyncapi_page.js\` on the event catalogue (\`/api/events/\`); served from
  this server (CSP: scripts only from 'self'), so the page works offline and CI needs no npm to show it.
MD
echo "vendored @asyncapi/react-component $version into $dest"
