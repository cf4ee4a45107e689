import { describe, expect, it } from "vitest";
import { storedVersion } from "../../src/history/mod.ts";
import { RuleBook, RuleSchema, type RuleVersion } from "../../src/rules/mod.ts";

const v = (version: number, enabled = true, target = version): RuleVersion => ({ rule: RuleSchema.parse({ id: "streak", type: "count", event: "app.opened", target, version, enabled }), version, effectiveFrom: version === 1 ? Number.NEGATIVE_INFINITY : version * 1000 });

describe("which stored version a history run applies", () => {
  it("takes the latest version, and refuses when the latest retires the rule instead of going back to an older one", () => {
    const live = new RuleBook([v(1), v(2)]);
    expect(storedVersion(live, ["*"], "streak")).toMatchObject({ scope: "*", version: { version: 2 } });
    const retired = new RuleBook([v(1), v(2), v(3, false)]);
    expect(storedVersion(retired, ["*"], "streak")).toMatch(/retired in the shared rules \(version 3 disables it/);
    // A named version is still there to apply.
    expect(storedVersion(retired, ["*"], "streak", 2)).toMatchObject({ version: { version: 2 } });
  });

  it("looks in the tenant's rules first, then the shared ones, and says where the rule is when it is elsewhere", () => {
    const book = new RuleBook([v(1)], new Map([["acme", [v(5, true, 9)]]]));
    expect(storedVersion(book, ["acme", "*"], "streak")).toMatchObject({ scope: "acme", version: { version: 5 } });
    expect(storedVersion(book, ["globex", "*"], "streak")).toMatchObject({ scope: "*", version: { version: 1 } });
    expect(storedVersion(book, ["*"], "streak", 5)).toMatch(/streak@5 is not stored in the shared rules; stored: streak@1/);
    const solo = new RuleBook([], new Map([["acme", [v(1)]]]));
    expect(storedVersion(solo, ["*"], "streak")).toMatch(/is stored in tenant acme \(give --tenant\)/);
    expect(storedVersion(book, ["*"], "nope")).toMatch(/no version of it is stored/);
  });
});
