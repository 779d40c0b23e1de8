// Build the package: dist/ (JS + .d.ts, by tsc), trio_sse/static/trio-sse.js (by esbuild), and
// print the minified + gzipped sizes. `--check` writes nothing: it fails when the committed
// trio_sse/static/trio-sse.js differs from a fresh build.
import { execFileSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { buildStatic, root, sizes, staticFile } from "./bundle.mjs";

const built = await buildStatic();
if (process.argv.includes("--check")) {
  const committed = readFileSync(staticFile, "utf8");
  if (committed !== built) {
    console.error("trio_sse/static/trio-sse.js differs from a fresh build of js/src: run npm run build in js/");
    process.exit(1);
  }
  console.log("trio_sse/static/trio-sse.js matches a fresh build");
} else {
  execFileSync(process.execPath, [`${root}/node_modules/typescript/bin/tsc`, "-p", "tsconfig.build.json"], {
    cwd: root,
    stdio: "inherit",
  });
  writeFileSync(staticFile, built);
  console.log("wrote dist/ and trio_sse/static/trio-sse.js");
}
const measured = await sizes();
for (const [entry, { minified, gzipped }] of Object.entries(measured)) {
  console.log(`${entry.padEnd(6)} entry: ${minified} B minified, ${gzipped} B minified + gzipped`);
}
