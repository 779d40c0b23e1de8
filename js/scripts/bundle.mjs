// The builds, as functions: scripts/build.mjs writes them, test/build.test.ts checks them.
import { gzipSync } from "node:zlib";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";

export const root = fileURLToPath(new URL("..", import.meta.url));
export const staticFile = fileURLToPath(new URL("../../trio_sse/static/trio-sse.js", import.meta.url));

const BANNER = `// trio-sse browser client, built from js/src/client.ts by js/scripts/build.mjs: do not edit.
// Dependency-free ES module: import { SSEClient } from "/static/trio-sse.js". See docs/clients.md.`;

/** Bundle `entry` (relative to js/) in memory; returns the output text. */
async function bundle(entry, options = {}) {
  const result = await build({
    entryPoints: [`${root}/${entry}`],
    bundle: true,
    format: "esm",
    target: "es2022",
    platform: "browser",
    write: false,
    logLevel: "silent",
    ...options,
  });
  return result.outputFiles[0].text;
}

/** The text of trio_sse/static/trio-sse.js, as a fresh build makes it. */
export function buildStatic() {
  return bundle("src/index.ts", { banner: { js: BANNER }, legalComments: "none" });
}

/** Keep the client out of the React entry's size: an app pays for it once. */
const clientExternal = {
  name: "client-external",
  setup(builder) {
    builder.onResolve({ filter: /\/client\.js$/ }, (args) => ({ path: args.path, external: true }));
  },
};

/** Minified + gzipped bytes of the client entry and of the React entry (without the client). */
export async function sizes() {
  const minified = { minify: true, legalComments: "none" };
  const client = await bundle("src/index.ts", minified);
  const react = await bundle("src/react.tsx", {
    ...minified,
    external: ["react", "react-dom"],
    plugins: [clientExternal],
  });
  const gz = (text) => gzipSync(text, { level: 9 }).length;
  return {
    client: { minified: client.length, gzipped: gz(client) },
    react: { minified: react.length, gzipped: gz(react) },
  };
}
