// @vitest-environment node
// One source: the served trio_sse/static/trio-sse.js must be what js/src builds to.
import { readFileSync } from "node:fs";
import { expect, it } from "vitest";
import { buildStatic, sizes, staticFile } from "../scripts/bundle.mjs";

it("the committed static client is exactly a fresh build of js/src", async () => {
  const committed = readFileSync(staticFile, "utf8");
  // on failure: cd js && npm run build, then commit trio_sse/static/trio-sse.js
  expect(committed === (await buildStatic())).toBe(true);
});

it("the entries stay under their size budgets (minified + gzipped)", async () => {
  const measured = await sizes();
  expect(measured.client.gzipped).toBeLessThan(4096);
  expect(measured.react.gzipped).toBeLessThan(2048);
});
