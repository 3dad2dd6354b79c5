/**
 * Bundles xl into one CommonJS file, dist/tools/xl/xl.cjs, which the `xl`
 * command runs (`npm run build` makes it from tsc's output). A command's
 * run is mostly Node starting and loading it: one minified file loads in
 * far less time than the forty modules tsc emits, and CommonJS spares
 * Node its ES module loader (docs/xl.md, "Start-up"). The linked source
 * map leads back to the TypeScript.
 */
import { build } from "esbuild";
import { join } from "node:path";
import { ROOT } from "../../extras/mini-os/paths.js";

const out = join(ROOT, "dist", "tools", "xl", "xl.cjs");
await build({
  entryPoints: [join(ROOT, "dist", "tools", "xl", "xl.js")],
  outfile: out,
  bundle: true,
  platform: "node",
  format: "cjs",
  target: "node20",
  minify: true,
  sourcemap: "linked",
  logLevel: "warning",
});
console.log(`xl: bundled into ${out}`);
