import { execFileSync } from "node:child_process";
import { fileURLToPath } from "node:url";

/** nats-server is missing and could not be installed; the message says how. */
export class NatsServerMissingError extends Error {
  override name = "NatsServerMissingError";
}

let cached: string | undefined;

/**
 * The path of a nats-server binary. Runs `scripts/ensure-nats-server.sh`,
 * which looks in PATH and the usual places and, as root with apt, installs
 * Debian's package.
 */
export function natsServerBinary(): string {
  if (cached) return cached;
  // From the sources (src/nats/) or compiled (dist/src/nats/): scripts/ is at the package root.
  const root = import.meta.url.endsWith(".ts") ? "../../" : "../../../";
  const script = fileURLToPath(new URL(`${root}scripts/ensure-nats-server.sh`, import.meta.url));
  try {
    cached = execFileSync("bash", [script], { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] }).trim();
    return cached;
  } catch (err) {
    const stderr = String((err as { stderr?: unknown }).stderr ?? "").trim();
    throw new NatsServerMissingError(stderr || "nats-server not found and could not be installed");
  }
}

/** `nats-server --version` as [major, minor, patch]. */
export function binaryVersion(bin: string): [number, number, number] {
  const out = execFileSync(bin, ["--version"], { encoding: "utf8" });
  return parseVersion(out);
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
