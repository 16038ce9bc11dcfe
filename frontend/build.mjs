// Builds the assets eventgraph serves into eventgraph/static/. Reproducible: the same
// package-lock.json gives byte-identical files (CI rebuilds and compares them).
import { build } from "esbuild";

const common = {
  bundle: true,
  minify: true,
  format: "esm",
  target: ["es2020"],
  legalComments: "linked",
  define: { "process.env.NODE_ENV": '"production"' },
  outdir: "../eventgraph/static",
  logLevel: "info",
};

await build({ ...common, entryPoints: { graphiql: "src/graphiql.jsx" }, loader: { ".js": "jsx" } });
await build({ ...common, entryPoints: { dashboard: "src/dashboard.js" } });
