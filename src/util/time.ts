/**
 * Calendar periods of instants in a user's IANA time zone, for the rule evaluator
 * (streaks of consecutive days / ISO weeks, calendar windows, repeatable achievements
 * that reset daily / weekly / monthly).
 *
 * Longer than the house's ~300 lines on purpose: the zone-offset cache and the
 * period arithmetic that relies on it are checked together by one property test
 * (test/unit/time.test.ts) and are easier to trust side by side.
 *
 * Pure: no clock, no randomness, no I/O. The only state is a bounded cache of one
 * `Intl.DateTimeFormat` per zone (plus a one-entry memo per zone), which never changes
 * a result.
 *
 * Periods are integer indices so that "consecutive" is simply "differs by 1":
 * - day:   days since 1970-01-01 of the local civil date (DST never makes a gap or a repeat
 *          of an index; a 23- or 25-hour local day is still exactly one index),
 * - week:  ISO weeks (Monday first); week 0 contains 1970-01-01, a Thursday,
 * - month: months since 1970-01.
 *
 * The civil date comes from `Intl.DateTimeFormat#formatToParts` (Node 20 has no Temporal);
 * everything after that is integer arithmetic on the proleptic Gregorian calendar
 * (Howard Hinnant's days-from-civil / civil-from-days). Years 1900..2200 are what matters;
 * the whole `Date` range (±8.64e15 ms) works.
 */

export type PeriodUnit = "day" | "week" | "month";

const MS_PER_DAY = 86_400_000;
const MS_PER_HOUR = 3_600_000;
/** The largest |epoch ms| a `Date` (and therefore Intl) accepts. */
const MAX_MS = 8.64e15;
/** Bound of both caches; there are ~600 IANA names, so real traffic never evicts. */
const MAX_CACHED_ZONES = 1024;

// ---------------------------------------------------------------- calendar arithmetic

/** Days since 1970-01-01 of the proleptic Gregorian date y-m-d (Hinnant's days_from_civil). */
function daysFromCivil(y: number, m: number, d: number): number {
  const yy = m <= 2 ? y - 1 : y;
  const era = Math.floor(yy / 400);
  const yoe = yy - era * 400; // [0, 399]
  const doy = Math.floor((153 * (m > 2 ? m - 3 : m + 9) + 2) / 5) + d - 1; // [0, 365]
  const doe = yoe * 365 + Math.floor(yoe / 4) - Math.floor(yoe / 100) + doy; // [0, 146096]
  return era * 146_097 + doe - 719_468;
}

/** Year of the day index `z` (Hinnant's civil_from_days), month/day via the out-parameters below. */
let outMonth = 1;
let outDay = 1;
function civilFromDays(z: number): number {
  const zz = z + 719_468;
  const era = Math.floor(zz / 146_097);
  const doe = zz - era * 146_097; // [0, 146096]
  const yoe = Math.floor(
    (doe - Math.floor(doe / 1460) + Math.floor(doe / 36_524) - Math.floor(doe / 146_096)) / 365,
  ); // [0, 399]
  const doy = doe - (365 * yoe + Math.floor(yoe / 4) - Math.floor(yoe / 100)); // [0, 365]
  const mp = Math.floor((5 * doy + 2) / 153); // [0, 11], March-based
  outDay = doy - Math.floor((153 * mp + 2) / 5) + 1;
  outMonth = mp < 10 ? mp + 3 : mp - 9;
  return yoe + era * 400 + (outMonth <= 2 ? 1 : 0);
}

/** Day of month (1-31) of the day index `z`. */
function dayOfMonth(z: number): number {
  civilFromDays(z);
  return outDay;
}

// ---------------------------------------------------------------- zone cache

type Zone = {
  fmt: Intl.DateTimeFormat;
  /** Offset from UTC in ms when the zone is a fixed offset (UTC, Etc/GMT±N); otherwise null. */
  fixedOffsetMs: number | null;
  /** One-entry memo: the evaluator asks day, week and month of the same event in a row. */
  lastMs: number;
  lastDay: number;
  /** Wall-clock formatter (to the second), made on first need. */
  wall: Intl.DateTimeFormat | undefined;
  /**
   * UTC offset (ms) of each 15-minute span of time seen, or NaN for a span
   * in which the offset changes (those are formatted instant by instant).
   */
  offsets: Map<number, number>;
};

/** The span over which a zone's offset is cached: tzdb never changes an offset twice within it. */
const SPAN_MS = 900_000;
/** Spans cached per zone (about three years of one zone's events). */
const MAX_SPANS = 100_000;

const zones = new Map<string, Zone>();
const validity = new Map<string, boolean>();

function remember<V>(map: Map<string, V>, key: string, value: V): void {
  if (map.size >= MAX_CACHED_ZONES) {
    // Oldest-inserted first: a Map iterates in insertion order.
    const oldest = map.keys().next();
    if (oldest.done !== true) map.delete(oldest.value);
  }
  map.set(key, value);
}

/** A formatter of the civil date in `tz`, and with `clock` of the wall-clock time to the second. */
function newFormatter(tz: string, clock = false): Intl.DateTimeFormat {
  return new Intl.DateTimeFormat("en-US", {
    timeZone: tz,
    calendar: "gregory", // proleptic in V8; "iso8601" has a Julian switch-over in ICU
    numberingSystem: "latn",
    year: "numeric",
    month: "numeric",
    day: "numeric",
    ...(clock ? { hourCycle: "h23", hour: "numeric", minute: "numeric", second: "numeric" } : {}),
  });
}

/** Offset of a canonical fixed-offset zone name, or null. Note the inverted POSIX sign of Etc/GMT±N. */
function fixedOffsetOf(canonical: string): number | null {
  if (canonical === "UTC" || canonical === "Etc/UTC" || canonical === "Etc/GMT" || canonical === "GMT") {
    return 0;
  }
  const m = /^Etc\/GMT([+-])(\d{1,2})$/.exec(canonical);
  if (m === null) return null;
  const hours = Number(m[2]);
  return (m[1] === "+" ? -hours : hours) * MS_PER_HOUR;
}

function zoneOf(tz: string): Zone {
  const cached = zones.get(tz);
  if (cached !== undefined) return cached;
  if (!isValidTimeZone(tz)) throw new RangeError(`invalid time zone: ${JSON.stringify(tz)}`);
  const fmt = newFormatter(tz);
  const zone: Zone = { fmt, fixedOffsetMs: null, lastMs: Number.NaN, lastDay: 0, wall: undefined, offsets: new Map() };
  const fixed = fixedOffsetOf(fmt.resolvedOptions().timeZone);
  if (fixed !== null) {
    // Trust the arithmetic only where it agrees with Intl (it always should for these names).
    const probes = [0, 1_775_000_000_000, -2_208_988_800_000, 7_258_118_400_000, 43_200_000, -43_200_001];
    if (probes.every((ms) => formatterDay(fmt, ms) === Math.floor((ms + fixed) / MS_PER_DAY))) {
      zone.fixedOffsetMs = fixed;
    }
  }
  remember(zones, tz, zone);
  return zone;
}

/**
 * Local day index of integer `ms` by formatting it. The local date is always within one day
 * of the UTC date (|offset| < 24 h), which also guards against an unexpected year (e.g. an
 * era-less "6" for 6 BC): if y-m-d is not within ±1 of the UTC day, match the day of month.
 */
function formatterDay(fmt: Intl.DateTimeFormat, ms: number): number {
  let year = Number.NaN;
  let month = Number.NaN;
  let day = Number.NaN;
  for (const part of fmt.formatToParts(ms)) {
    switch (part.type) {
      case "year":
        year = Number(part.value);
        break;
      case "month":
        month = Number(part.value);
        break;
      case "day":
        day = Number(part.value);
        break;
      default:
        break;
    }
  }
  const utcDay = Math.floor(ms / MS_PER_DAY);
  const local = daysFromCivil(year, month, day);
  const diff = local - utcDay;
  if (diff >= -1 && diff <= 1) return local;
  for (const candidate of [utcDay, utcDay - 1, utcDay + 1]) {
    if (dayOfMonth(candidate) === day) return candidate;
  }
  throw new RangeError(`cannot interpret formatted date ${year}-${month}-${day} of ${ms}`);
}

/**
 * The zone's UTC offset at instant `ms` (whole ms, at a whole second), from its
 * wall-clock time; undefined if the formatted time is not within a day of UTC
 * (an era-less BC year).
 */
function offsetAt(zone: Zone, ms: number): number | undefined {
  if (ms < -MAX_MS || ms > MAX_MS) return undefined; // a span at the end of the Date range
  zone.wall ??= newFormatter(zone.fmt.resolvedOptions().timeZone, true);
  const f: Record<string, number> = {};
  for (const part of zone.wall.formatToParts(ms)) if (part.type !== "literal") f[part.type] = Number(part.value);
  const wall = daysFromCivil(f.year!, f.month!, f.day!) * MS_PER_DAY + f.hour! * MS_PER_HOUR + f.minute! * 60_000 + f.second! * 1000;
  const off = wall - (ms - (((ms % 1000) + 1000) % 1000));
  return Math.abs(off) < MS_PER_DAY ? off : undefined;
}

/**
 * Local day index in a zone with changing offsets. Formatting is slow
 * (microseconds), so the offset is cached per 15-minute span: formatted at
 * both ends of the span, and trusted in between when they agree (tzdb
 * never changes an offset and back within 15 minutes). Offsets are whole
 * seconds, so the day is exact arithmetic on the instant.
 */
function zonedDay(zone: Zone, t: number): number {
  const span = Math.floor(t / SPAN_MS);
  let off = zone.offsets.get(span);
  if (off === undefined) {
    const a = offsetAt(zone, span * SPAN_MS);
    const b = offsetAt(zone, span * SPAN_MS + SPAN_MS - 1);
    off = a !== undefined && a === b ? a : Number.NaN;
    if (zone.offsets.size >= MAX_SPANS) zone.offsets.clear();
    zone.offsets.set(span, off);
  }
  return Number.isNaN(off) ? formatterDay(zone.fmt, t) : Math.floor((t + off) / MS_PER_DAY);
}

function checkInstant(ms: number): number {
  if (typeof ms !== "number" || !(ms >= -MAX_MS && ms <= MAX_MS)) {
    throw new RangeError(`instant out of range: ${String(ms)}`);
  }
  return Math.floor(ms); // a fraction of a millisecond belongs to the millisecond before it
}

// ---------------------------------------------------------------- public API

/**
 * True when `tz` is an IANA zone name Intl accepts (e.g. "Europe/Berlin", "UTC",
 * "Pacific/Kiritimati"; Intl also accepts case variants and links such as "utc" or
 * "US/Eastern"); false for "", "Mars/Olympus", and for offset strings such as "+02:00"
 * (rejected even where a newer engine would accept them). Results are cached (bounded).
 */
export function isValidTimeZone(tz: string): boolean {
  const cached = validity.get(tz);
  if (cached !== undefined) return cached;
  let ok = false;
  if (typeof tz === "string" && tz.length > 0 && tz.length <= 64 && /^[A-Za-z]/.test(tz)) {
    try {
      new Intl.DateTimeFormat("en-US", { timeZone: tz });
      ok = true;
    } catch {
      ok = false;
    }
  }
  if (typeof tz === "string") remember(validity, tz, ok);
  return ok;
}

/**
 * The civil date (year, month 1-12, day 1-31, proleptic Gregorian) of the instant `ms`
 * (epoch milliseconds; fractions are floored) in zone `tz`.
 * Throws RangeError for an invalid zone (see {@link isValidTimeZone}) or an instant outside
 * the `Date` range (±8.64e15 ms, NaN, ±Infinity).
 */
export function civilDate(ms: number, tz: string): { year: number; month: number; day: number } {
  const year = civilFromDays(dayIndex(ms, tz));
  return { year, month: outMonth, day: outDay };
}

/**
 * Days since 1970-01-01 of the civil date of `ms` in `tz` (so consecutive local days differ by
 * exactly 1, whatever DST does; 1969-12-31 is -1). Same errors as {@link civilDate}.
 */
export function dayIndex(ms: number, tz: string): number {
  const t = checkInstant(ms);
  const zone = zoneOf(tz);
  if (zone.lastMs === t) return zone.lastDay;
  const day =
    zone.fixedOffsetMs !== null
      ? Math.floor((t + zone.fixedOffsetMs) / MS_PER_DAY)
      : zonedDay(zone, t);
  zone.lastMs = t;
  zone.lastDay = day;
  return day;
}

/**
 * ISO-week index: weeks start on Monday; week 0 is the week containing 1970-01-01 (a Thursday),
 * i.e. Math.floor((dayIndex + 3) / 7). Same errors as {@link civilDate}.
 */
export function weekIndex(ms: number, tz: string): number {
  return Math.floor((dayIndex(ms, tz) + 3) / 7);
}

/**
 * Months since 1970-01: (year - 1970) * 12 + (month - 1), of the civil date of `ms` in `tz`.
 * Same errors as {@link civilDate}.
 */
export function monthIndex(ms: number, tz: string): number {
  const year = civilFromDays(dayIndex(ms, tz));
  return (year - 1970) * 12 + (outMonth - 1);
}

/**
 * The period index of `ms` in `tz` for a unit (dispatches to {@link dayIndex},
 * {@link weekIndex} and {@link monthIndex}). Throws RangeError for an unknown unit.
 */
export function periodIndex(ms: number, tz: string, unit: PeriodUnit): number {
  switch (unit) {
    case "day":
      return dayIndex(ms, tz);
    case "week":
      return weekIndex(ms, tz);
    case "month":
      return monthIndex(ms, tz);
    default:
      throw new RangeError(`unknown period unit: ${String(unit satisfies never)}`);
  }
}

function pad(n: number, width: number): string {
  return String(n).padStart(width, "0");
}

function yearLabel(y: number): string {
  return y < 0 ? `-${pad(-y, 4)}` : pad(y, 4);
}

/**
 * A readable label of a period index: day → "2026-04-13", week → ISO week "2026-W16" (the
 * year is the ISO week-numbering year: 2027-01-01 is in "2026-W53", 2024-12-30 in "2025-W01"),
 * month → "2026-04". Pure function of (index, unit), no zone needed. Negative indices (before
 * 1970) work; years before 0 are written "-0001"-style. Throws RangeError if `index` is not a
 * safe integer or the unit is unknown.
 */
export function periodLabel(index: number, unit: PeriodUnit): string {
  if (!Number.isSafeInteger(index)) throw new RangeError(`period index must be an integer: ${String(index)}`);
  switch (unit) {
    case "day": {
      const y = civilFromDays(index);
      return `${yearLabel(y)}-${pad(outMonth, 2)}-${pad(outDay, 2)}`;
    }
    case "week": {
      // The Thursday of an ISO week decides its year; week 0's Thursday is day 0.
      const thursday = index * 7;
      const isoYear = civilFromDays(thursday);
      const week = Math.floor((thursday - daysFromCivil(isoYear, 1, 1)) / 7) + 1;
      return `${yearLabel(isoYear)}-W${pad(week, 2)}`;
    }
    case "month": {
      const y = 1970 + Math.floor(index / 12);
      const m = index - Math.floor(index / 12) * 12 + 1;
      return `${yearLabel(y)}-${pad(m, 2)}`;
    }
    default:
      throw new RangeError(`unknown period unit: ${String(unit satisfies never)}`);
  }
}
