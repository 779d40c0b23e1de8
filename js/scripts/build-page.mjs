// Build the React test page (test/browser/app.tsx) into OUTDIR: index.html + app.js.
// Used by tests/test_browser_react.py: node js/scripts/build-page.mjs OUTDIR
import { writeFileSync } from "node:fs";
import { build } from "esbuild";
import { root } from "./bundle.mjs";

const outdir = process.argv[2];
if (!outdir) throw new Error("usage: node scripts/build-page.mjs OUTDIR");
await build({
  entryPoints: [`${root}/test/browser/app.tsx`],
  bundle: true,
  format: "esm",
  target: "es2022",
  outfile: `${outdir}/app.js`,
  define: { "process.env.NODE_ENV": '"production"' },
  jsx: "automatic",
  minify: true,
  logLevel: "warning",
});
writeFileSync(
  `${outdir}/index.html`,
  `<!doctype html><meta charset="utf-8"><title>trio-sse react</title>
<div id="app"></div><div id="cycles"></div><script type="module" src="app.js"></script>\n`,
);
