import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  civilDate,
  dayIndex,
  isValidTimeZone,
  monthIndex,
  periodIndex,
  periodLabel,
  weekIndex,
  type PeriodUnit,
} from "../../src/util/time.ts";

const H = 3_600_000;
const DAY = 24 * H;
const iso = (s: string): number => {
  const ms = Date.parse(s);
  if (Number.isNaN(ms)) throw new Error(`bad test date ${s}`);
  return ms;
};
/** Days since 1970-01-01 of a civil date, computed independently with Date.UTC. */
const utcDays = (y: number, m: number, d: number): number => Date.UTC(y, m - 1, d) / DAY;

/** Independent civil-date oracle: Swedish locale formats as YYYY-MM-DD. */
const oracle = (ms: number, tz: string): string =>
  new Date(ms).toLocaleDateString("sv-SE", { timeZone: tz, year: "numeric", month: "2-digit", day: "2-digit" });

/** Independent ISO week oracle (classic "Thursday of the week" computation on UTC dates). */
function isoWeekOracle(ms: number): string {
  const d = new Date(ms);
  const date = new Date(Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate()));
  const dow = date.getUTCDay() === 0 ? 7 : date.getUTCDay();
  date.setUTCDate(date.getUTCDate() + 4 - dow);
  const year = date.getUTCFullYear();
  const week = Math.ceil(((date.getTime() - Date.UTC(year, 0, 1)) / DAY + 1) / 7);
  return `${year}-W${String(week).padStart(2, "0")}`;
}

const YEAR_1900 = Date.UTC(1900, 0, 1);
const YEAR_2200 = Date.UTC(2200, 0, 1);

describe("UTC basics", () => {
  it("counts days from 1970-01-01", () => {
    expect(dayIndex(Date.UTC(1970, 0, 1), "UTC")).toBe(0);
    expect(dayIndex(Date.UTC(1970, 0, 1, 23, 59, 59, 999), "UTC")).toBe(0);
    expect(dayIndex(Date.UTC(1970, 0, 2), "UTC")).toBe(1);
    expect(dayIndex(iso("1969-12-31T23:59:59.999Z"), "UTC")).toBe(-1);
    expect(dayIndex(iso("1969-12-31T00:00:00.000Z"), "UTC")).toBe(-1);
    expect(dayIndex(iso("1969-12-30T23:59:59.999Z"), "UTC")).toBe(-2);
    expect(dayIndex(Date.UTC(2026, 3, 13, 12), "UTC")).toBe(utcDays(2026, 4, 13));
  });

  it("floors fractional milliseconds", () => {
    expect(dayIndex(-0.5, "UTC")).toBe(-1);
    expect(dayIndex(0.5, "UTC")).toBe(0);
    expect(dayIndex(-0.5, "Europe/London")).toBe(dayIndex(-1, "Europe/London"));
  });

  it("starts ISO weeks on Monday, week 0 containing 1970-01-01", () => {
    expect(weekIndex(Date.UTC(1969, 11, 29), "UTC")).toBe(0); // Monday
    expect(weekIndex(Date.UTC(1970, 0, 1), "UTC")).toBe(0); // Thursday
    expect(weekIndex(Date.UTC(1970, 0, 4, 23, 59), "UTC")).toBe(0); // Sunday
    expect(weekIndex(Date.UTC(1970, 0, 5), "UTC")).toBe(1); // Monday
    expect(weekIndex(Date.UTC(1969, 11, 28, 12), "UTC")).toBe(-1); // Sunday before
  });

  it("counts months from 1970-01", () => {
    expect(monthIndex(Date.UTC(1970, 0, 1), "UTC")).toBe(0);
    expect(monthIndex(Date.UTC(1970, 0, 31, 23, 59), "UTC")).toBe(0);
    expect(monthIndex(Date.UTC(1970, 1, 1), "UTC")).toBe(1);
    expect(monthIndex(Date.UTC(1969, 11, 31), "UTC")).toBe(-1);
    expect(monthIndex(Date.UTC(2026, 3, 13), "UTC")).toBe(56 * 12 + 3);
  });

  it("civilDate of UTC instants", () => {
    expect(civilDate(0, "UTC")).toEqual({ year: 1970, month: 1, day: 1 });
    expect(civilDate(-1, "UTC")).toEqual({ year: 1969, month: 12, day: 31 });
    expect(civilDate(Date.UTC(2024, 1, 29, 23), "UTC")).toEqual({ year: 2024, month: 2, day: 29 });
    expect(civilDate(Date.UTC(1900, 1, 28), "UTC")).toEqual({ year: 1900, month: 2, day: 28 });
    expect(civilDate(Date.UTC(1900, 2, 1), "UTC")).toEqual({ year: 1900, month: 3, day: 1 }); // 1900 not leap
    expect(civilDate(Date.UTC(2200, 11, 31), "UTC")).toEqual({ year: 2200, month: 12, day: 31 });
  });

  it("periodIndex dispatches on the unit", () => {
    const ms = iso("2026-04-13T10:30:00Z");
    for (const tz of ["UTC", "Europe/Berlin", "Pacific/Kiritimati"]) {
      expect(periodIndex(ms, tz, "day")).toBe(dayIndex(ms, tz));
      expect(periodIndex(ms, tz, "week")).toBe(weekIndex(ms, tz));
      expect(periodIndex(ms, tz, "month")).toBe(monthIndex(ms, tz));
    }
    expect(() => periodIndex(0, "UTC", "year" as PeriodUnit)).toThrow(RangeError);
  });
});

describe("day boundaries across DST", () => {
  type Case = {
    tz: string;
    name: string;
    /** The DST day (local civil date). */
    date: [number, number, number];
    /** UTC instants of the local midnight starting that day and the next one. */
    startsAt: string;
    endsAt: string;
    hours: number;
    /** UTC instants of local 23:30 the day before and 00:30 the day after. */
    before2330: string;
    after0030: string;
  };
  const cases: Case[] = [
    {
      tz: "Europe/Berlin",
      name: "spring forward 2026-03-29",
      date: [2026, 3, 29],
      startsAt: "2026-03-28T23:00:00Z", // 00:00 CET
      endsAt: "2026-03-29T22:00:00Z", // 00:00 CEST
      hours: 23,
      before2330: "2026-03-28T22:30:00Z", // 23:30 CET on 03-28
      after0030: "2026-03-29T22:30:00Z", // 00:30 CEST on 03-30
    },
    {
      tz: "Europe/Berlin",
      name: "fall back 2026-10-25",
      date: [2026, 10, 25],
      startsAt: "2026-10-24T22:00:00Z", // 00:00 CEST
      endsAt: "2026-10-25T23:00:00Z", // 00:00 CET
      hours: 25,
      before2330: "2026-10-24T21:30:00Z", // 23:30 CEST on 10-24
      after0030: "2026-10-25T23:30:00Z", // 00:30 CET on 10-26
    },
    {
      tz: "America/New_York",
      name: "spring forward 2026-03-08",
      date: [2026, 3, 8],
      startsAt: "2026-03-08T05:00:00Z", // 00:00 EST
      endsAt: "2026-03-09T04:00:00Z", // 00:00 EDT
      hours: 23,
      before2330: "2026-03-08T04:30:00Z", // 23:30 EST on 03-07
      after0030: "2026-03-09T04:30:00Z", // 00:30 EDT on 03-09
    },
    {
      tz: "America/New_York",
      name: "fall back 2026-11-01",
      date: [2026, 11, 1],
      startsAt: "2026-11-01T04:00:00Z", // 00:00 EDT
      endsAt: "2026-11-02T05:00:00Z", // 00:00 EST
      hours: 25,
      before2330: "2026-11-01T03:30:00Z", // 23:30 EDT on 10-31
      after0030: "2026-11-02T05:30:00Z", // 00:30 EST on 11-02
    },
  ];

  for (const c of cases) {
    describe(`${c.tz} ${c.name}`, () => {
      const [y, m, d] = c.date;
      const want = utcDays(y, m, d);
      const start = iso(c.startsAt);
      const end = iso(c.endsAt);

      it(`is a ${c.hours}-hour local day`, () => {
        expect((end - start) / H).toBe(c.hours);
      });

      it("local 23:30 → 00:30 across each midnight bounding the DST day differs by exactly 1", () => {
        const before = dayIndex(iso(c.before2330), c.tz);
        const after = dayIndex(iso(c.after0030), c.tz);
        expect(before).toBe(want - 1);
        expect(after).toBe(want + 1);
        // 23:30 → next day's 00:30 is one local day step, across the DST day boundary:
        expect(dayIndex(iso(c.before2330) + H, c.tz) - before).toBe(1);
        expect(after - dayIndex(iso(c.after0030) - H, c.tz)).toBe(1);
      });

      it("maps every hour (and minute 59) of the short/long day to the same index", () => {
        for (let h = 0; h < c.hours; h++) {
          expect(dayIndex(start + h * H, c.tz)).toBe(want);
          expect(dayIndex(start + h * H + 59 * 60_000, c.tz)).toBe(want);
        }
        expect(civilDate(start + (c.hours - 1) * H, c.tz)).toEqual({ year: y, month: m, day: d });
      });

      it("instants 1 ms apart around local midnight map to consecutive days", () => {
        expect(dayIndex(start - 1, c.tz)).toBe(want - 1);
        expect(dayIndex(start, c.tz)).toBe(want);
        expect(dayIndex(end - 1, c.tz)).toBe(want);
        expect(dayIndex(end, c.tz)).toBe(want + 1);
      });
    });
  }

  it("a 24-hour shift from the day before a spring-forward day skips no index", () => {
    // 2026-03-28 23:30 CET + 24h = 2026-03-30 00:30 CEST: two local days later.
    const ms = iso("2026-03-28T22:30:00Z");
    expect(dayIndex(ms + DAY, "Europe/Berlin") - dayIndex(ms, "Europe/Berlin")).toBe(2);
    // 2026-10-25 00:30 CEST + 24h = 2026-10-25 23:30 CET: the same local day.
    const ms2 = iso("2026-10-24T22:30:00Z");
    expect(dayIndex(ms2 + DAY, "Europe/Berlin") - dayIndex(ms2, "Europe/Berlin")).toBe(0);
  });
});

describe("extreme offsets", () => {
  const ms = iso("2026-04-13T10:30:00Z");

  it("puts the same instant on three civil dates", () => {
    expect(civilDate(ms, "Pacific/Kiritimati")).toEqual({ year: 2026, month: 4, day: 14 });
    expect(civilDate(ms, "UTC")).toEqual({ year: 2026, month: 4, day: 13 });
    expect(civilDate(ms, "Etc/GMT+12")).toEqual({ year: 2026, month: 4, day: 12 });
    expect(dayIndex(ms, "Pacific/Kiritimati") - dayIndex(ms, "Etc/GMT+12")).toBe(2);
    expect(dayIndex(ms, "Pacific/Kiritimati")).toBe(utcDays(2026, 4, 14));
    expect(dayIndex(ms, "Etc/GMT+12")).toBe(utcDays(2026, 4, 12));
  });

  it("honours the inverted sign of Etc/GMT±N at their midnights", () => {
    // Etc/GMT+12 is UTC−12: its 2026-04-13 starts at 12:00Z.
    expect(dayIndex(iso("2026-04-13T11:59:59.999Z"), "Etc/GMT+12")).toBe(utcDays(2026, 4, 12));
    expect(dayIndex(iso("2026-04-13T12:00:00Z"), "Etc/GMT+12")).toBe(utcDays(2026, 4, 13));
    // Etc/GMT-14 is UTC+14: its 2026-04-14 starts at 2026-04-13T10:00Z.
    expect(dayIndex(iso("2026-04-13T09:59:59.999Z"), "Etc/GMT-14")).toBe(utcDays(2026, 4, 13));
    expect(dayIndex(iso("2026-04-13T10:00:00Z"), "Etc/GMT-14")).toBe(utcDays(2026, 4, 14));
    // Kiritimati is UTC+14 too.
    expect(dayIndex(iso("2026-04-13T09:59:59.999Z"), "Pacific/Kiritimati")).toBe(utcDays(2026, 4, 13));
    expect(dayIndex(iso("2026-04-13T10:00:00Z"), "Pacific/Kiritimati")).toBe(utcDays(2026, 4, 14));
  });

  it("handles month and ISO-week boundaries that differ between zones", () => {
    const nye = iso("2026-12-31T12:00:00Z"); // 2027-01-01 02:00 in Kiritimati; 2026-12-31 00:00 at UTC−12
    expect(monthIndex(nye, "Pacific/Kiritimati") - monthIndex(nye, "Etc/GMT+12")).toBe(1);
    expect(periodLabel(monthIndex(nye, "Pacific/Kiritimati"), "month")).toBe("2027-01");
    expect(periodLabel(monthIndex(nye, "Etc/GMT+12"), "month")).toBe("2026-12");
    // 2026-04-12 is a Sunday, 2026-04-13 a Monday.
    expect(weekIndex(iso("2026-04-13T10:30:00Z"), "Etc/GMT+12") + 1).toBe(
      weekIndex(iso("2026-04-13T10:30:00Z"), "Pacific/Kiritimati"),
    );
  });
});

describe("a change of the user's time zone", () => {
  it("maps the same instant to different days in Tokyo and Los Angeles", () => {
    const ms = iso("2026-04-13T20:00:00Z"); // Tokyo 04-14 05:00 (UTC+9), LA 04-13 13:00 (UTC−7)
    expect(civilDate(ms, "Asia/Tokyo")).toEqual({ year: 2026, month: 4, day: 14 });
    expect(civilDate(ms, "America/Los_Angeles")).toEqual({ year: 2026, month: 4, day: 13 });
    expect(dayIndex(ms, "Asia/Tokyo") - dayIndex(ms, "America/Los_Angeles")).toBe(1);
  });

  it("maps the same instant to the same day when both are in daytime", () => {
    const ms = iso("2026-04-13T02:00:00Z"); // Tokyo 04-13 11:00, LA 04-12 19:00
    expect(dayIndex(ms, "Asia/Tokyo")).toBe(utcDays(2026, 4, 13));
    expect(dayIndex(ms, "America/Los_Angeles")).toBe(utcDays(2026, 4, 12));
    const ms2 = iso("2026-04-13T16:00:00Z"); // Tokyo 04-14 01:00, LA 04-13 09:00
    expect(dayIndex(ms2, "Asia/Tokyo") - dayIndex(ms2, "America/Los_Angeles")).toBe(1);
    const ms3 = iso("2026-04-13T07:30:00Z"); // Tokyo 04-13 16:30, LA 04-13 00:30
    expect(dayIndex(ms3, "Asia/Tokyo")).toBe(dayIndex(ms3, "America/Los_Angeles"));
  });

  it("the one-entry memo does not leak between zones", () => {
    const ms = iso("2026-04-13T20:00:00Z");
    const seq = ["Asia/Tokyo", "America/Los_Angeles", "Asia/Tokyo", "UTC", "America/Los_Angeles"];
    expect(seq.map((tz) => dayIndex(ms, tz))).toEqual(seq.map((tz) => utcDays(2026, 4, tz === "Asia/Tokyo" ? 14 : 13)));
  });
});

describe("periodLabel", () => {
  it("labels ISO weeks with the ISO week-numbering year", () => {
    expect(periodLabel(weekIndex(Date.UTC(2026, 0, 1), "UTC"), "week")).toBe("2026-W01");
    expect(periodLabel(weekIndex(Date.UTC(2027, 0, 1), "UTC"), "week")).toBe("2026-W53"); // Friday
    expect(periodLabel(weekIndex(Date.UTC(2026, 11, 28), "UTC"), "week")).toBe("2026-W53"); // Monday
    expect(periodLabel(weekIndex(Date.UTC(2027, 0, 4), "UTC"), "week")).toBe("2027-W01");
    expect(periodLabel(weekIndex(Date.UTC(2024, 11, 30), "UTC"), "week")).toBe("2025-W01"); // Monday
    expect(periodLabel(weekIndex(Date.UTC(2024, 11, 29), "UTC"), "week")).toBe("2024-W52"); // Sunday
    expect(periodLabel(weekIndex(Date.UTC(2026, 3, 13), "UTC"), "week")).toBe("2026-W16");
    expect(periodLabel(weekIndex(Date.UTC(2021, 0, 3), "UTC"), "week")).toBe("2020-W53");
    expect(periodLabel(0, "week")).toBe("1970-W01");
    expect(periodLabel(-1, "week")).toBe("1969-W52");
  });

  it("labels days", () => {
    expect(periodLabel(0, "day")).toBe("1970-01-01");
    expect(periodLabel(-1, "day")).toBe("1969-12-31");
    expect(periodLabel(utcDays(2026, 4, 13), "day")).toBe("2026-04-13");
    expect(periodLabel(utcDays(2000, 2, 29), "day")).toBe("2000-02-29");
    expect(periodLabel(utcDays(1900, 1, 1), "day")).toBe("1900-01-01");
    expect(periodLabel(utcDays(2200, 12, 31), "day")).toBe("2200-12-31");
    expect(periodLabel(iso("0005-06-07T00:00:00Z") / DAY, "day")).toBe("0005-06-07");
    expect(periodLabel(iso("-000005-03-01T00:00:00Z") / DAY, "day")).toBe("-0005-03-01");
  });

  it("labels months", () => {
    expect(periodLabel(0, "month")).toBe("1970-01");
    expect(periodLabel(11, "month")).toBe("1970-12");
    expect(periodLabel(12, "month")).toBe("1971-01");
    expect(periodLabel(-1, "month")).toBe("1969-12");
    expect(periodLabel(-12, "month")).toBe("1969-01");
    expect(periodLabel(-13, "month")).toBe("1968-12");
    expect(periodLabel(56 * 12 + 3, "month")).toBe("2026-04");
  });

  it("rejects non-integer indices and unknown units", () => {
    expect(() => periodLabel(1.5, "day")).toThrow(RangeError);
    expect(() => periodLabel(Number.NaN, "week")).toThrow(RangeError);
    expect(() => periodLabel(1, "year" as PeriodUnit)).toThrow(RangeError);
  });
});

describe("isValidTimeZone", () => {
  it("accepts IANA names", () => {
    for (const tz of ["Europe/Berlin", "UTC", "Pacific/Kiritimati", "America/New_York", "Etc/GMT+12", "Asia/Kolkata"]) {
      expect(isValidTimeZone(tz), tz).toBe(true);
      expect(isValidTimeZone(tz), `${tz} (cached)`).toBe(true);
    }
  });

  it("rejects everything else", () => {
    for (const tz of ["", "Mars/Olympus", "+02:00", "-05:00", "UTC+2", "Europe/Berlin ", " ", "Europe"]) {
      expect(isValidTimeZone(tz), JSON.stringify(tz)).toBe(false);
      expect(isValidTimeZone(tz), `${JSON.stringify(tz)} (cached)`).toBe(false);
    }
  });

  it("handles years far outside 1900..2200 (Intl drops the era of BC years)", () => {
    const bc = iso("-000004-03-01T12:00:00Z"); // 5 BC; Berlin is on LMT +00:53:28
    expect(civilDate(bc, "Europe/Berlin")).toEqual({ year: -4, month: 3, day: 1 });
    expect(civilDate(bc + 11.5 * H, "Europe/Berlin")).toEqual({ year: -4, month: 3, day: 2 }); // 00:23 local
    expect(civilDate(bc - 12.5 * H, "Europe/Berlin")).toEqual({ year: -4, month: 3, day: 1 }); // 00:23 local
    expect(civilDate(bc - 13 * H, "Europe/Berlin")).toEqual({ year: -4, month: 2, day: 29 }); // proleptic leap year
    expect(civilDate(iso("+275760-09-13T00:00:00Z"), "Asia/Tokyo")).toEqual({ year: 275760, month: 9, day: 13 });
  });

  it("makes the index functions throw RangeError for invalid zones and instants", () => {
    expect(() => dayIndex(0, "Mars/Olympus")).toThrow(RangeError);
    expect(() => civilDate(0, "")).toThrow(RangeError);
    expect(() => weekIndex(0, "+02:00")).toThrow(RangeError);
    expect(() => dayIndex(Number.NaN, "UTC")).toThrow(RangeError);
    expect(() => dayIndex(Number.POSITIVE_INFINITY, "Europe/Berlin")).toThrow(RangeError);
    expect(() => dayIndex(8.64e15 + 1, "UTC")).toThrow(RangeError);
    expect(dayIndex(8.64e15, "UTC")).toBe(1e8);
    expect(dayIndex(-8.64e15, "UTC")).toBe(-1e8);
  });
});

describe("properties", () => {
  const instant = fc.integer({ min: YEAR_1900, max: YEAR_2200 });
  const zones = [
    "UTC",
    "Europe/Berlin",
    "America/New_York",
    "Australia/Lord_Howe", // 30-minute DST
    "Asia/Kolkata", // +05:30
    "Asia/Kathmandu", // +05:45
    "Pacific/Kiritimati",
    "Etc/GMT+12",
    "America/Sao_Paulo",
  ];
  const zone = fc.constantFrom(...zones);

  it("a 24-hour shift advances dayIndex by exactly 1 in UTC", () => {
    fc.assert(
      fc.property(instant, (ms) => {
        expect(dayIndex(ms + DAY, "UTC") - dayIndex(ms, "UTC")).toBe(1);
      }),
      { numRuns: 2000 },
    );
  });

  it("a 24-hour shift advances dayIndex by 0, 1 or 2 in any zone, and by 1 away from offset changes", () => {
    fc.assert(
      fc.property(instant, zone, (ms, tz) => {
        const step = dayIndex(ms + DAY, tz) - dayIndex(ms, tz);
        expect([0, 1, 2]).toContain(step);
        // Away from DST transitions (same local wall clock 24h apart) it must be exactly 1.
        const wall = (t: number): string =>
          new Date(t).toLocaleTimeString("en-GB", { timeZone: tz, hour12: false });
        if (wall(ms) === wall(ms + DAY)) expect(step).toBe(1);
      }),
      { numRuns: 1000 },
    );
  });

  it("dayIndex gives the local date Intl formats, in every zone, also around offset changes", () => {
    const local = (ms: number, tz: string): string => {
      const f = Object.fromEntries(
        new Intl.DateTimeFormat("en-US", { timeZone: tz, calendar: "gregory", year: "numeric", month: "2-digit", day: "2-digit" })
          .formatToParts(ms)
          .map((p) => [p.type, p.value]),
      );
      return `${f.year}-${f.month}-${f.day}`;
    };
    // Offset changes (UTC): Berlin's DST, Lord Howe's 30-minute DST, São Paulo's changes at local midnight
    // (spring forward 2018, fall back 2019), Amsterdam and Monrovia with offsets in seconds.
    const changes = ["2026-03-29T01:00:00Z", "2026-10-25T01:00:00Z", "2026-04-04T15:00:00Z", "2018-11-04T03:00:00Z", "2019-02-17T02:00:00Z", "1937-07-01T00:00:00Z", "1972-01-07T00:44:30Z"].map(Date.parse);
    const near = fc.tuple(fc.constantFrom(...changes), fc.integer({ min: -3 * 3_600_000, max: 3 * 3_600_000 })).map(([t, d]) => t + d);
    const tzs = fc.constantFrom(...zones, "Europe/Amsterdam", "Africa/Monrovia");
    fc.assert(
      fc.property(fc.oneof(instant, near), tzs, (ms, tz) => {
        expect(periodLabel(dayIndex(ms, tz), "day")).toBe(local(ms, tz));
      }),
      { numRuns: 5000 },
    );
  });

  it("day labels in UTC equal toISOString's date", () => {
    fc.assert(
      fc.property(fc.integer({ min: -62_000_000_000_000, max: 250_000_000_000_000 }), (ms) => {
        expect(periodLabel(dayIndex(ms, "UTC"), "day")).toBe(new Date(ms).toISOString().slice(0, 10));
      }),
      { numRuns: 2000 },
    );
  });

  it("civil dates agree with an independent Intl oracle in every zone", () => {
    fc.assert(
      fc.property(instant, zone, (ms, tz) => {
        const { year, month, day } = civilDate(ms, tz);
        const label = periodLabel(dayIndex(ms, tz), "day");
        expect(label).toBe(oracle(ms, tz));
        expect(label).toBe(`${year}-${String(month).padStart(2, "0")}-${String(day).padStart(2, "0")}`);
        expect(periodLabel(monthIndex(ms, tz), "month")).toBe(label.slice(0, 7));
      }),
      { numRuns: 1500 },
    );
  });

  it("week labels match an independent ISO-week computation, weeks are Monday-aligned", () => {
    fc.assert(
      fc.property(instant, (ms) => {
        const w = weekIndex(ms, "UTC");
        expect(periodLabel(w, "week")).toBe(isoWeekOracle(ms));
        const monday = w * 7 - 3;
        expect(new Date(monday * DAY).getUTCDay()).toBe(1);
        const d = dayIndex(ms, "UTC");
        expect(d >= monday && d < monday + 7).toBe(true);
      }),
      { numRuns: 2000 },
    );
  });

  it("dayIndex is non-decreasing in time for modern DST zones", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: Date.UTC(1980, 0, 1), max: Date.UTC(2100, 0, 1) }),
        fc.integer({ min: 1, max: 3 * DAY }),
        zone,
        (ms, dt, tz) => {
          expect(dayIndex(ms + dt, tz)).toBeGreaterThanOrEqual(dayIndex(ms, tz));
        },
      ),
      { numRuns: 1000 },
    );
  });

  it("results do not depend on call order (caches are transparent)", () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(instant, zone), { minLength: 1, maxLength: 20 }), (calls) => {
        const first = calls.map(([ms, tz]) => dayIndex(ms, tz));
        const reversed = [...calls].reverse().map(([ms, tz]) => dayIndex(ms, tz)).reverse();
        expect(reversed).toEqual(first);
        expect(first).toEqual(calls.map(([ms, tz]) => utcDaysOfLabel(oracle(ms, tz))));
      }),
      { numRuns: 200 },
    );
  });
});

function utcDaysOfLabel(label: string): number {
  return Date.parse(`${label}T00:00:00Z`) / DAY;
}
