import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { startChild, type ChildEngine } from "../helpers/child.ts";
import { eventually } from "../helpers/engine.ts";
import { SERVER_VERSION } from "../helpers/nats.ts";
import { ev } from "../helpers/stream.ts";

function logged(child: ChildEngine, msg: string, field: string): string {
  const line = child.output.find((l) => l.includes(`"msg":"${msg}"`));
  return (JSON.parse(line!) as Record<string, string>)[field]!;
}

describe("achd start on the embedded default", () => {
  const dir = mkdtempSync(join(tmpdir(), "achd-embedded-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  const start = async () => {
    const child = startChild("", "start", { NATS_URL: "", ACH_DATA_DIR: dir, ACH_NATS_PORT: "-1", PORT: "0" });
    await child.waitFor('"msg":"HTTP API listening"');
    return { child, api: logged(child, "HTTP API listening", "url") };
  };
  // The first start wrote an admin key into the data folder; requests carry it.
  const fetch = (url: string, init: RequestInit = {}) => {
    const key = readFileSync(join(dir, "auth", "admin.key"), "utf8").trim();
    return globalThis.fetch(url, { ...init, headers: { ...(init.headers as Record<string, string> | undefined), authorization: `Bearer ${key}` } });
  };

  it("starts its own nats-server, unlocks, stops cleanly on SIGINT, and continues from stored state", async () => {
    const first = await start();
    const user = "embedded-user";
    const post = (e: object) => fetch(`${first.api}/v1/events`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(e) });
    const lessons = [1, 2, 3].map(() => ev("acme", user, "lesson.completed", { duration_seconds: 90 }));
    for (const e of lessons) expect((await post(e)).status).toBe(200);
    const progress = async (api: string) => {
      const r = (await (await fetch(`${api}/v1/tenants/acme/users/${user}/achievements`)).json()) as { unlocked: unknown[]; in_progress: { achievement_id: string; current: number }[] };
      return r;
    };
    await eventually(async () => ((await progress(first.api)).in_progress.find((p) => p.achievement_id === "five-lessons")?.current === 3 ? true : undefined));
    // It says which nats-server it runs: the newest on the machine, or ACH_NATS_SERVER's.
    expect(logged(first.child, "embedded nats-server started", "version")).toBe(SERVER_VERSION.join("."));
    expect(await first.child.kill("SIGINT")).toBe(0);
    const log = first.child.output.join("\n");
    expect(log).toContain('"msg":"stopped"');
    // The first start made an admin key: the log names its file (mode 0600), never the key.
    const keyFile = join(dir, "auth", "admin.key");
    expect(log).toContain(`"file":${JSON.stringify(keyFile)}`);
    expect(log).not.toContain(readFileSync(keyFile, "utf8").trim().slice("achd_".length + 13));

    const second = await start();
    try {
      const more = [1, 2].map(() => ev("acme", user, "lesson.completed", { duration_seconds: 90 }));
      for (const e of more) {
        const res = await fetch(`${second.api}/v1/events`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(e) });
        expect(res.status).toBe(200);
      }
      const done = await eventually(async () => {
        const p = await progress(second.api);
        return p.unlocked.length === 2 ? p : undefined;
      });
      expect(done.unlocked).toContainEqual(expect.objectContaining({ achievement_id: "five-lessons", rule_version: 3 }));
    } finally {
      expect(await second.child.kill("SIGTERM")).toBe(0);
    }
  });
});
