// Builds what eventgraph serves into dist/: GraphiQL and the dashboard's script bundled with
// esbuild, beside the hand-written pages of public/. Reproducible: the same package-lock.json
// gives byte-identical files (CI rebuilds and compares them with the committed ones).
import { cpSync, rmSync } from "node:fs";
import { build } from "esbuild";

rmSync("dist", { recursive: true, force: true });
cpSync("public", "dist", { recursive: true });

const common = {
  bundle: true,
  minify: true,
  format: "esm",
  target: ["es2020"],
  legalComments: "linked",
  define: { "process.env.NODE_ENV": '"production"' },
  outdir: "dist",
  logLevel: "warning",
};

await build({ ...common, entryPoints: { graphiql: "src/graphiql.jsx" } });
await build({ ...common, entryPoints: { dashboard: "src/dashboard.js" } });
