"""The browser side: the live dashboard and GraphiQL. Sources in `src/` and `public/`,
built with `npm ci && npm run build` into `dist/`, which is committed and shipped with the
package, so that the server needs no Node.js and no internet to serve the pages."""

from pathlib import Path

DIST = Path(__file__).parent / "dist"
