/**
 * Builds the web console's page into dist/web/: app.ts and what it imports
 * (xterm.js, uPlot) bundled by esbuild into one script, app.css with
 * their stylesheets into one, and index.html. `npm run build` runs it;
 * the daemon serves only these three files (server.ts).
 */
import { build } from "esbuild";
import { copyFileSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { ROOT } from "../../extras/mini-os/paths.js";
import { PAGE_DIR } from "./server.js";

const SRC = join(ROOT, "tools", "web", "page");

mkdirSync(PAGE_DIR, { recursive: true });
await build({
  entryPoints: [join(SRC, "app.ts"), join(SRC, "app.css")],
  outdir: PAGE_DIR,
  bundle: true,
  format: "esm",
  target: "es2022",
  minify: true,
  sourcemap: false,
  legalComments: "eof",
  logLevel: "warning",
  loader: { ".ttf": "dataurl", ".woff": "dataurl", ".woff2": "dataurl" },
});
copyFileSync(join(SRC, "index.html"), join(PAGE_DIR, "index.html"));
console.log(`web: built the console's page into ${PAGE_DIR}`);
