import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { createAccount, createUser } from "@nats-io/nkeys";
import { CredentialsError, EmbeddedServerError, ensureEngineSeed, readCredential, writeServerConfig } from "../../src/nats/mod.ts";
import { AuthorizationConfigError, renderAuthorization, tenantInboxPrefix, tenantPermissions } from "../../src/tenants/mod.ts";

const dir = mkdtempSync(join(tmpdir(), "achd-auth-unit-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const engine = createUser().getPublicKey();
const acme = createUser().getPublicKey();
const globex = createUser().getPublicKey();

describe("the authorization block", () => {
  it("gives the engine full rights and each tenant its own subjects only, sorted by tenant", () => {
    const text = renderAuthorization(engine, [
      { tenant: "globex", nkey: globex },
      { tenant: "acme", nkey: acme },
    ]);
    expect(text).toBe(
      [
        "authorization {",
        "  users: [",
        "    # the engine: full rights",
        `    { nkey: "${engine}" }`,
        "    # tenant acme",
        `    { nkey: "${acme}", permissions: {`,
        '        publish: { allow: ["ach.events.acme.>", "ach.p.*.acme.>"] },',
        '        subscribe: { allow: ["ach.unlocked.acme.>", "_INBOX_acme.>"] } } }',
        "    # tenant globex",
        `    { nkey: "${globex}", permissions: {`,
        '        publish: { allow: ["ach.events.globex.>", "ach.p.*.globex.>"] },',
        '        subscribe: { allow: ["ach.unlocked.globex.>", "_INBOX_globex.>"] } } }',
        "  ]",
        "}",
        "",
      ].join("\n"),
    );
    expect(renderAuthorization(engine, [])).not.toContain("permissions");
  });

  it("lists allowed subjects only: nothing internal, nothing of another tenant", () => {
    const p = tenantPermissions("acme");
    const all = [...p.publish.allow, ...p.subscribe.allow];
    for (const s of all) expect(s.startsWith("$") || s.startsWith("ach.dlq") || s === ">" || s.includes("globex")).toBe(false);
    expect(p.publish.allow.some((s) => s.startsWith("ach.unlocked"))).toBe(false);
    expect(tenantInboxPrefix("acme")).toBe("_INBOX_acme");
  });

  it("refuses anything that is not a valid tenant id or public user key, so nothing unchecked reaches the server config", () => {
    const seed = new TextDecoder().decode(createUser().getSeed());
    const bad: [string, string][] = [
      ['acme" }, { nkey: "x', acme],
      ["_ach", acme],
      ["a.b", acme],
      ["acme", seed],
      ["acme", createAccount().getPublicKey()],
      ["acme", `${acme.slice(0, -1)}${acme.endsWith("A") ? "B" : "A"}`],
    ];
    for (const [tenant, nkey] of bad) expect(() => renderAuthorization(engine, [{ tenant, nkey }]), `${tenant} ${nkey}`).toThrow(AuthorizationConfigError);
    expect(() => renderAuthorization(seed, [])).toThrow(AuthorizationConfigError);
    expect(() => renderAuthorization(engine, [{ tenant: "acme", nkey: engine }])).toThrow(/already used/);
    expect(() => renderAuthorization(engine, [{ tenant: "acme", nkey: acme }, { tenant: "globex", nkey: acme }])).toThrow(/already used/);
    // The error shows no seed.
    expect(() => renderAuthorization(engine, [{ tenant: "acme", nkey: seed }])).toThrow(expect.objectContaining({ message: expect.not.stringContaining(seed.slice(10)) }));
  });
});

describe("credential files", () => {
  it("generates the engine's seed once, mode 0600 in a 0700 folder, and reuses it", () => {
    const data = join(dir, "data");
    const first = ensureEngineSeed(data);
    expect(first.created).toBe(true);
    expect(statSync(first.file).mode & 0o777).toBe(0o600);
    expect(statSync(join(data, "auth")).mode & 0o777).toBe(0o700);
    const again = ensureEngineSeed(data);
    expect(again).toEqual({ ...first, created: false });
    expect(readCredential(first.file)).toMatchObject({ kind: "nkey", publicKey: first.publicKey });
  });

  it("tells a seed file from a .creds file and refuses anything else without quoting it", () => {
    const kp = createUser();
    const seed = new TextDecoder().decode(kp.getSeed());
    const seedFile = join(dir, "u.nk");
    writeFileSync(seedFile, `${seed}\n`);
    expect(readCredential(seedFile)).toMatchObject({ kind: "nkey", publicKey: kp.getPublicKey() });

    const claims = Buffer.from(JSON.stringify({ sub: kp.getPublicKey(), nats: { type: "user" } })).toString("base64url");
    const creds = `-----BEGIN NATS USER JWT-----\neyJ0eXAiOiJKV1QiLCJhbGciOiJlZDI1NTE5LW5rZXkifQ.${claims}.c2ln\n------END NATS USER JWT------\n\n-----BEGIN USER NKEY SEED-----\n${seed}\n------END USER NKEY SEED------\n`;
    const credsFile = join(dir, "u.creds");
    writeFileSync(credsFile, creds);
    expect(readCredential(credsFile)).toMatchObject({ kind: "creds", publicKey: kp.getPublicKey() });

    const junk = join(dir, "junk");
    writeFileSync(junk, "password=hunter2\n");
    expect(() => readCredential(junk)).toThrow(CredentialsError);
    expect(() => readCredential(junk)).toThrow(expect.objectContaining({ message: expect.not.stringContaining("hunter2") }));
    const damaged = join(dir, "damaged.nk");
    writeFileSync(damaged, `${seed.slice(0, -2)}${seed.endsWith("AA") ? "BB" : "AA"}\n`);
    expect(() => readCredential(damaged)).toThrow(/damaged/);
    expect(() => readCredential(join(dir, "missing"))).toThrow(/cannot read/);
  });
});

describe("the embedded server's config", () => {
  const v29: [number, number, number] = [2, 9, 10];
  const v215: [number, number, number] = [2, 15, 3];
  it("puts the store directory in the file (reloadable on 2.9) and includes the authorization file", () => {
    const data = join(dir, "srv");
    const base = join(dir, "base.conf");
    writeFileSync(base, "# store_dir is the engine's\nserver_name: x\njetstream {\n  max_file_store: 1GB\n}\n");
    const conf = readFileSync(writeServerConfig({ host: "127.0.0.1", port: -1, dataDir: data, baseConfig: base, partitions: 4, authorization: join(data, "auth", "authorization.conf") }, v29), "utf8");
    expect(conf).toContain(`jetstream {\n  store_dir: ${JSON.stringify(join(data, "jetstream"))}\n  max_file_store: 1GB\n}`);
    expect(conf).toContain('include "auth/authorization.conf"');
    expect(conf).toContain('"ach.events.*.*.>"');
    const bare = readFileSync(writeServerConfig({ host: "127.0.0.1", port: -1, dataDir: join(dir, "bare") }, v29), "utf8");
    expect(bare).toContain(`jetstream {\n  store_dir: ${JSON.stringify(join(dir, "bare", "jetstream"))}\n}`);
    expect(bare).not.toContain("include");
    writeFileSync(base, "jetstream {\n  store_dir: /elsewhere\n}\n");
    expect(() => writeServerConfig({ host: "127.0.0.1", port: -1, dataDir: data, baseConfig: base }, v29)).toThrow(EmbeddedServerError);
  });

  it("writes the partition mapping only for servers before 2.10, whose streams cannot map subjects", () => {
    const opts = { host: "127.0.0.1", port: -1, dataDir: join(dir, "map"), partitions: 4 };
    expect(readFileSync(writeServerConfig(opts, v29), "utf8")).toContain("{{partition(4,1,2)}}");
    expect(readFileSync(writeServerConfig(opts, [2, 10, 0]), "utf8")).not.toContain("mappings");
    expect(readFileSync(writeServerConfig(opts, v215), "utf8")).not.toContain("mappings");
  });

  it("sets fsync on every write when sync is always, and refuses it on 2.9 and beside the base config's own setting", () => {
    const opts = { host: "127.0.0.1", port: -1, dataDir: join(dir, "sync"), sync: "always" as const };
    expect(readFileSync(writeServerConfig(opts, v215), "utf8")).toMatch(/jetstream \{\n {2}sync_interval: always\n {2}store_dir: /);
    expect(readFileSync(writeServerConfig({ ...opts, sync: "default" }, v215), "utf8")).not.toContain("sync_interval");
    expect(() => writeServerConfig(opts, v29)).toThrow(/has no sync_interval \(it came in 2\.10\)/);
    const base = join(dir, "sync.conf");
    writeFileSync(base, "jetstream {\n  sync_interval: 10s\n}\n");
    expect(() => writeServerConfig({ ...opts, baseConfig: base }, v215)).toThrow(/sets sync_interval/);
  });
});
