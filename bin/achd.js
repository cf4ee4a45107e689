#!/usr/bin/env node
// Runs the CLI from TypeScript sources when they are present (a checkout),
// from the compiled dist/ otherwise (the container image).
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";

const source = new URL("../cmd/achd.ts", import.meta.url);
if (existsSync(fileURLToPath(source))) {
  const { register } = await import("tsx/esm/api");
  register();
  await import(source.href);
} else {
  await import(new URL("../dist/cmd/achd.js", import.meta.url).href);
}
