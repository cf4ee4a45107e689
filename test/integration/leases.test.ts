/**
 * Lease and membership buckets on a real server, where the engine met them
 * under load: listings while the bucket is being written (heartbeats,
 * renewals), and a renewal whose reply came too late to count although the
 * server wrote it.
 */
import { Kvm, type KV } from "@nats-io/kv";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { LeaseTable, Membership } from "../../src/cluster/mod.ts";
import { eventually } from "../helpers/engine.ts";
import { startTestNats, type TestNats } from "../helpers/nats.ts";

const TTL = 1000;

describe("lease and membership buckets", () => {
  let nats: TestNats;
  let n = 0;
  /** A fresh bucket like the engine's: one revision per key, entries expire after the TTL. */
  const bucket = async (): Promise<KV> => new Kvm(nats.nc).create(`t_${n++}`, { history: 1, ttl: TTL });
  beforeAll(async () => {
    nats = await startTestNats(1);
  });
  afterAll(async () => {
    await nats?.cleanup();
  });

  it("lists each live worker once and at once while heartbeats keep coming, and not those that left or expired", async () => {
    const kv = await bucket();
    const ids = ["w1", "w2", "w3"];
    const members = ids.map((id) => new Membership(kv, id));
    let beating = true;
    // Every member has written its first heartbeat before the first listing (on a loaded machine the loops below
    // may not have written one yet when it starts).
    await Promise.all(members.map((m) => m.heartbeat(Date.now())));
    // Heartbeats far more often than the engine's, so that writes land during every listing.
    const beats = members.map(async (m) => {
      while (beating) await m.heartbeat(Date.now());
    });
    try {
      const observer = new Membership(kv, "observer");
      for (let i = 0; i < 30; i++) {
        const t0 = Date.now();
        expect(await observer.live()).toEqual(ids);
        expect(Date.now() - t0, "one listing").toBeLessThan(TTL);
      }
      beating = false;
      await Promise.all(beats);
      await members[0]!.leave();
      expect(await observer.live()).toEqual(["w2", "w3"]);
      await eventually(async () => ((await observer.live()).length === 0 ? true : undefined), 10 * TTL, "expired heartbeats gone");
    } finally {
      beating = false;
      await Promise.all(beats);
    }
  });

  it("keeps a lease whose last renewal was written although its reply came too late, and loses it to anyone else", async () => {
    const kv = await bucket();
    const mine = new LeaseTable(kv, "w1");
    const h = (await mine.acquire(0, Date.now()))!;
    // A renewal the worker gave up on, written all the same: the key moved on without the worker knowing its revision.
    const stale = h.revision;
    const entry = (await kv.get("p.0"))!;
    await kv.update("p.0", entry.value, stale);
    expect(await mine.renew(h, Date.now())).toBe(true);
    expect(h.revision).toBeGreaterThan(stale + 1);
    // The same again, then a release: it removes the lease at the revision it finds.
    await kv.update("p.0", entry.value, h.revision);
    await mine.release(h);
    expect(await kv.get("p.0").then((e) => e?.operation)).not.toBe("PUT");

    // Taken by another worker after it was gone: lost, whatever the revision.
    const h2 = (await mine.acquire(1, Date.now()))!;
    await kv.delete("p.1");
    const theirs = await new LeaseTable(kv, "w2").acquire(1, Date.now());
    expect(theirs).toBeDefined();
    expect(await mine.renew(h2, Date.now())).toBe(false);

    // Taken again by the same worker id in another tenure (a restarted process): lost to the old tenure.
    const h3 = (await mine.acquire(2, Date.now() - 5000))!;
    const again = await mine.acquire(2, Date.now());
    expect(again?.revision).toBeGreaterThan(h3.revision);
    expect(await mine.renew(h3, Date.now())).toBe(false);
  });
});
