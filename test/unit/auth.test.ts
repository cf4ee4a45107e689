import { describe, expect, it } from "vitest";
import { TenantQuotas } from "../../src/api/quota.ts";
import { checkKeySpec, generateKey, grants, hashSecret, KeyRequestError, parseKey, secretMatches } from "../../src/auth/mod.ts";

describe("API keys", () => {
  it("generates keys with a 48-bit id and a 256-bit secret, different every time, that parse back", () => {
    const seen = new Set<string>();
    for (let i = 0; i < 200; i++) {
      const k = generateKey();
      expect(k.key).toMatch(/^achd_[0-9a-f]{12}_[A-Za-z0-9_-]{43}$/);
      const p = parseKey(k.key)!;
      expect(p.id).toBe(k.id);
      expect(Buffer.from(p.secret, "base64url")).toHaveLength(32);
      expect(hashSecret(p.secret)).toBe(k.hash);
      expect(k.hash).not.toContain(p.secret);
      seen.add(k.key);
    }
    expect(seen.size).toBe(200);
  });

  it("matches a secret only against its own hash", () => {
    const a = generateKey();
    const b = generateKey();
    expect(secretMatches(parseKey(a.key)!.secret, a.hash)).toBe(true);
    expect(secretMatches(parseKey(a.key)!.secret, b.hash)).toBe(false);
    expect(secretMatches(parseKey(a.key)!.secret, "abcd")).toBe(false);
  });

  it("does not parse strings that only look like keys", () => {
    for (const s of ["", "achd_", "achd_0123456789ab_short", `achd_0123456789AB_${"x".repeat(43)}`, `xchd_0123456789ab_${"x".repeat(43)}`, `achd_0123456789ab_${"x".repeat(44)}`]) {
      expect(parseKey(s), s).toBeUndefined();
    }
  });

  it("lets admin grant every scope and a tenant key only its own", () => {
    expect(grants({ scopes: ["admin"] }, "rules:write")).toBe(true);
    expect(grants({ scopes: ["read"] }, "read")).toBe(true);
    expect(grants({ scopes: ["read"] }, "events:write")).toBe(false);
    expect(grants({ scopes: ["events:write", "rules:write"] }, "admin")).toBe(false);
  });

  it("checks key requests: admin without tenant and alone, tenant keys with a tenant and tenant scopes", () => {
    expect(checkKeySpec({ tenant: null, scopes: ["admin"] })).toEqual({ tenant: null, scopes: ["admin"], name: "" });
    expect(checkKeySpec({ tenant: "acme", scopes: ["read", "read", "events:write"], name: "svc" })).toEqual({ tenant: "acme", scopes: ["read", "events:write"], name: "svc" });
    const bad: [Parameters<typeof checkKeySpec>[0], RegExp][] = [
      [{ tenant: "acme", scopes: ["admin"] }, /^tenant: an admin key belongs to no tenant/],
      [{ tenant: null, scopes: ["admin", "read"] }, /^scopes: admin already grants/],
      [{ tenant: null, scopes: ["read"] }, /^tenant: a key with read belongs to one tenant/],
      [{ tenant: "acme", scopes: [] }, /^scopes: give at least one/],
      [{ tenant: "acme", scopes: ["root"] }, /^scopes: unknown "root"/],
      [{ tenant: "a.b", scopes: ["read"] }, /^tenant: "a.b" is not a valid tenant id/],
      [{ tenant: "acme", scopes: ["read"], name: "x\ny" }, /^name:/],
    ];
    for (const [spec, re] of bad) {
      let err: unknown;
      try {
        checkKeySpec(spec);
      } catch (e) {
        err = e;
      }
      expect(err, JSON.stringify(spec)).toBeInstanceOf(KeyRequestError);
      expect((err as Error).message).toMatch(re);
    }
  });
});

describe("tenant quotas", () => {
  it("takes a request's events all at once or not at all, per tenant, and refills at the rate", () => {
    const q = new TenantQuotas(10, 20);
    const t0 = 1_000_000;
    expect(q.take(new Map([["a", 15]]), t0)).toEqual({ ok: true });
    // 5 left for a: 6 do not fit, and b's share of the same request is not taken either.
    const over = q.take(
      new Map([
        ["b", 3],
        ["a", 6],
      ]),
      t0,
    );
    expect(over).toMatchObject({ ok: false, tenant: "a" });
    expect((over as { retryAfterSeconds: number }).retryAfterSeconds).toBeCloseTo(0.1, 5);
    expect(q.take(new Map([["b", 20]]), t0)).toEqual({ ok: true });
    // 0.1 s later a has 6.
    expect(q.take(new Map([["a", 6]]), t0 + 100)).toEqual({ ok: true });
    expect(q.take(new Map([["a", 1]]), t0 + 100)).toMatchObject({ ok: false });
    // Never more than the burst, however long idle.
    expect(q.take(new Map([["a", 21]]), t0 + 10_000_000)).toMatchObject({ ok: false });
    expect(q.take(new Map([["a", 20]]), t0 + 10_000_000)).toEqual({ ok: true });
  });

  it("lets everything through at rate 0", () => {
    const q = new TenantQuotas(0, 0);
    expect(q.take(new Map([["a", 1e6]]))).toEqual({ ok: true });
  });
});
