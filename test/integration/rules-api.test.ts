import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Engine } from "../../src/engine.ts";
import { apiFetch, eventually, fixture, startTestEngine } from "../helpers/engine.ts";
import { startTestNats, type TestNats } from "../helpers/nats.ts";
import { ev, publishAll } from "../helpers/stream.ts";

type Version = { id: string; version: number; scope: string; enabled: boolean; effective_from: string | null; source: string };
type Listing = { active: (Version & { rule: Record<string, unknown> })[]; history: Version[] };

describe("versioned rules over the API and from files", () => {
  let nats: TestNats;
  let engine: Engine;
  let rulesDir: string;
  const api = async <T>(path: string, init?: RequestInit) => {
    const res = await apiFetch(engine, path, init);
    return { status: res.status, body: (await res.json()) as T };
  };
  const put = (path: string, body: unknown) => api<Record<string, unknown>>(path, { method: "PUT", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });

  beforeAll(async () => {
    rulesDir = mkdtempSync(join(tmpdir(), "achd-rules-"));
    cpSync(fixture("rules"), rulesDir, { recursive: true });
    nats = await startTestNats(4);
    engine = await startTestEngine(nats.url, { rules: rulesDir });
  });
  afterAll(async () => {
    await engine?.stop();
    await nats?.cleanup();
    rmSync(rulesDir, { recursive: true, force: true });
  });

  it("lists a tenant's active rules (shared and own) and their history", async () => {
    const acme = await api<Listing>("/v1/tenants/acme/rules");
    expect(acme.status).toBe(200);
    const active = Object.fromEntries(acme.body.active.map((v) => [v.id, v]));
    expect(active["five-lessons"]).toMatchObject({ version: 3, scope: "tenant", source: "file" });
    expect(active["first-lesson"]).toMatchObject({ version: 1, scope: "shared" });
    expect(acme.body.history.map((h) => `${h.scope}/${h.id}@${h.version}`)).toContain("shared/five-lessons@1");
    const shared = await api<Listing>("/v1/rules");
    expect(shared.body.active.map((v) => v.id)).not.toContain("inviter");
  });

  it("adds a version with PUT; events are evaluated by the version in force at their occurred_at", async () => {
    const before = new Date(Date.now() - 60_000).toISOString();
    const res = await put("/v1/tenants/acme/rules/inviter", { type: "count", event: "team.invited", target: 1, title: "Team player" });
    expect(res.status).toBe(201);
    expect(res.body).toMatchObject({ id: "inviter", version: 2, source: "api", enabled: true });
    await eventually(async () => ((await api<Listing>("/v1/tenants/acme/rules")).body.active.find((v) => v.id === "inviter")?.version === 2 ? true : undefined));
    // An event from before the change is judged by version 1 (two invites); one from after by version 2 (one invite).
    await publishAll(nats.js, [ev("acme", "v-old", "team.invited", {}, { occurred_at: before }), ev("acme", "v-new", "team.invited", {}, { occurred_at: new Date(Date.now() + 1000).toISOString() })]);
    const achievements = (user: string) => api<{ unlocked: { achievement_id: string; rule_version: number }[]; in_progress: { achievement_id: string; current: number; target: number }[] }>(`/v1/tenants/acme/users/${user}/achievements`);
    const fresh = await eventually(async () => {
      const a = await achievements("v-new");
      return a.body.unlocked.length ? a.body : undefined;
    });
    expect(fresh.unlocked).toEqual([expect.objectContaining({ achievement_id: "inviter", rule_version: 2 })]);
    await eventually(async () => (engine.stats.applied >= 2 ? true : undefined));
    expect((await achievements("v-old")).body.unlocked).toEqual([]);
  });

  it("refuses an invalid rule with every problem named by path", async () => {
    const res = await put("/v1/tenants/acme/rules/broken", {
      type: "streak",
      event: "lesson.completed",
      period: "day",
      timezone: "Mars/Olympus",
      tiers: [
        { name: "bronze", target: 5 },
        { name: "silver", target: 3 },
      ],
    });
    expect(res.status).toBe(400);
    const problems = res.body.problems as { rule?: string; path: string; reason: string }[];
    expect(problems).toContainEqual(expect.objectContaining({ rule: "broken", path: "timezone", reason: expect.stringMatching(/unknown time zone/) }));
    expect(problems).toContainEqual(expect.objectContaining({ path: "tiers.1.target", reason: expect.stringMatching(/must increase/) }));
    const cross = await put("/v1/tenants/acme/rules/needs-ghost", { type: "count", event: "x.y", target: 1, prerequisites: ["ghost"] });
    expect(cross.status).toBe(400);
    expect(cross.body.problems).toEqual([{ rule: "needs-ghost", path: "prerequisites.0", reason: "unknown achievement ghost" }]);
    const cycle = await put("/v1/tenants/acme/rules/loop", { type: "composite", of: ["loop2"] });
    expect(cycle.status).toBe(400);
  });

  it("retires a rule with DELETE", async () => {
    const res = await api<Version>("/v1/tenants/acme/rules/inviter", { method: "DELETE" });
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ id: "inviter", version: 3, enabled: false });
    await eventually(async () => ((await api<Listing>("/v1/tenants/acme/rules")).body.active.some((v) => v.id === "inviter") ? undefined : true));
    expect((await api("/v1/tenants/acme/rules/nothing-here", { method: "DELETE" })).status).toBe(404);
  });

  it("turns a changed rule file into a new version at the next start, and leaves unchanged rules alone", async () => {
    await engine.stop();
    const file = join(rulesDir, "count.yaml");
    writeFileSync(file, readFileSync(file, "utf8").replace("id: five-lessons\n    version: 1", "id: five-lessons").replace("target: 5\n    reward", "target: 6\n    reward"));
    engine = await startTestEngine(nats.url, { rules: rulesDir });
    const shared = await api<Listing>("/v1/rules");
    const five = shared.body.history.filter((h) => h.id === "five-lessons").map((h) => h.version);
    expect(five).toEqual([1, 2]);
    expect(shared.body.active.find((v) => v.id === "five-lessons")?.rule).toMatchObject({ target: 6 });
    expect(shared.body.history.filter((h) => h.id === "first-lesson").map((h) => h.version)).toEqual([1]);
    // The API-made versions of acme's inviter are untouched by the file sync.
    const acme = await api<Listing>("/v1/tenants/acme/rules");
    expect(acme.body.history.filter((h) => h.id === "inviter").map((h) => `${h.version}:${h.source}`)).toEqual(["1:file", "2:api", "3:api"]);
  });
});
