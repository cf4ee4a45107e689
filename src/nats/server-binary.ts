import { execFileSync } from "node:child_process";
import { fileURLToPath } from "node:url";

/** nats-server is missing and could not be installed; the message says how. */
export class NatsServerMissingError extends Error {
  override name = "NatsServerMissingError";
}

/**
 * Which binary `scripts/ensure-nats-server.sh` finds: `default` is the server
 * the engine runs (`ACH_NATS_SERVER`, else the newest on the machine, else the
 * reference release built with Go, else Debian's package); `reference` and
 * `floor` are the newest and oldest supported servers; `cli` is the `nats` CLI.
 */
export type NatsTool = "default" | "reference" | "floor" | "cli";

const found = new Map<string, string>();

function ensureScript(): string {
  // From the sources (src/nats/) or compiled (dist/src/nats/): scripts/ is at the package root.
  const root = import.meta.url.endsWith(".ts") ? "../../" : "../../../";
  return fileURLToPath(new URL(`${root}scripts/ensure-nats-server.sh`, import.meta.url));
}

/**
 * The path of a NATS binary (see {@link NatsTool}), installed first when it
 * is missing and `install` is not false. The engine's server may take a
 * minute or two the first time, where it is built with Go.
 */
export function natsBinary(tool: NatsTool, opts: { install?: boolean } = {}): string {
  const install = opts.install !== false;
  const key = `${tool}:${install}:${process.env.ACH_NATS_SERVER ?? ""}`;
  const hit = found.get(key);
  if (hit) return hit;
  try {
    const path = execFileSync("bash", [ensureScript(), tool, ...(install ? [] : ["--no-install"])], { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] }).trim();
    found.set(key, path);
    return path;
  } catch (err) {
    const stderr = String((err as { stderr?: unknown }).stderr ?? "").trim();
    throw new NatsServerMissingError(stderr || `${tool === "cli" ? "the nats CLI" : "nats-server"} (${tool}) not found${install ? " and could not be installed" : ""}`);
  }
}

/** The nats-server the engine runs (see {@link NatsTool}'s `default`). */
export function natsServerBinary(): string {
  return natsBinary("default");
}

/** The path of a NATS binary, or undefined when it is not on this machine (nothing is installed). */
export function natsBinaryIfPresent(tool: NatsTool): string | undefined {
  try {
    return natsBinary(tool, { install: false });
  } catch {
    return undefined;
  }
}

const versions = new Map<string, [number, number, number]>();

/** `nats-server --version` as [major, minor, patch] (asked once per binary). */
export function binaryVersion(bin: string): [number, number, number] {
  let v = versions.get(bin);
  if (!v) {
    v = parseVersion(execFileSync(bin, ["--version"], { encoding: "utf8" }));
    versions.set(bin, v);
  }
  return v;
}

/** Parses `2.9.10` (or `nats-server: v2.9.10`) into numbers; unknown parts are 0. */
export function parseVersion(v: string): [number, number, number] {
  const m = /(\d+)\.(\d+)\.(\d+)/.exec(v);
  return m ? [Number(m[1]), Number(m[2]), Number(m[3])] : [0, 0, 0];
}

/** True when version `v` is at least `major.minor`. */
export function atLeast(v: [number, number, number], major: number, minor: number): boolean {
  return v[0] > major || (v[0] === major && v[1] >= minor);
}
