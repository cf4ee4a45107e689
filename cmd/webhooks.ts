/**
 * `achd webhooks add|list|remove|enable|disable` — a tenant's webhooks,
 * straight in the webhooks bucket and on the unlocks stream (with the
 * engine's NATS credential), as the API does them.
 */
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import { loadConfig } from "../src/config/mod.ts";
import { Buckets, openBucket } from "../src/nats/mod.ts";
import { WebhookRegistry, WebhookRequestError, type WebhookView } from "../src/notify/webhooks/mod.ts";
import { dispatchGroup, parseCommand, UsageError, type CliConnect, type ExitCode } from "./cli.ts";

const ADD_USAGE = `usage: achd webhooks add <tenant> <url> [--achievement A]… [--disabled] [--backfill]
  register a webhook: every unlock of the tenant (or of the achievements named) is POSTed to url,
  signed (Standard Webhooks); prints its id, and its signing secret once (stdout carries the secret alone)
  --achievement A   only unlocks of achievement A (repeat for more)
  --backfill        backfilled unlocks too (marked backfill: true; without it they stay quiet)
  --disabled        register it disabled (enable it later)`;
const LIST_USAGE = `usage: achd webhooks list <tenant>
  the tenant's webhooks: id, enabled (or why not), url, filter (never a secret)`;
const REMOVE_USAGE = `usage: achd webhooks remove <tenant> <id>
  remove a webhook, its consumer, its delivery log and its dead letters`;
const ENABLE_USAGE = `usage: achd webhooks enable <tenant> <id>
  enable a webhook (also one disabled after failing deliveries); it goes on from where it stopped`;
const DISABLE_USAGE = `usage: achd webhooks disable <tenant> <id>
  disable a webhook: nothing is delivered to it until it is enabled again`;
const USAGE = `usage: achd webhooks add <tenant> <url> [--achievement A]… [--disabled] [--backfill]
       achd webhooks list <tenant>
       achd webhooks remove <tenant> <id>
       achd webhooks enable|disable <tenant> <id>`;

async function withRegistry<T>(connect: CliConnect, fn: (r: WebhookRegistry) => Promise<T>): Promise<T> {
  const config = loadConfig();
  const nc = await connect(config, "achd-webhooks");
  try {
    const kv = await openBucket(new Kvm(nc), config, Buckets.Webhooks);
    return await fn(new WebhookRegistry({ kv, js: jetstream(nc), jsm: await jetstreamManager(nc), config }));
  } finally {
    await nc.close();
  }
}

function line(w: WebhookView): string {
  const state = w.enabled ? "enabled" : `disabled (${w.disabled_reason ?? "no reason given"})`;
  return `${w.id}  ${w.tenant}  ${state}  ${w.url}  ${w.achievements ? `achievements: ${w.achievements.join(",")}` : "every unlock"}${w.backfill ? " (backfilled too)" : ""}  created ${w.created_at}`;
}

/** Turns a refused request into a usage error (exit 2) with the command's usage. */
async function asUsage<T>(usage: string, name: string, work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (err) {
    if (err instanceof WebhookRequestError) throw new UsageError(`${name}: ${err.message}\n${usage}`);
    throw err;
  }
}

function toggle(connect: CliConnect, enabled: boolean): (args: string[]) => Promise<ExitCode> {
  const name = `achd webhooks ${enabled ? "enable" : "disable"}`;
  const usage = enabled ? ENABLE_USAGE : DISABLE_USAGE;
  return async (args) => {
    const a = parseCommand({ name, usage, options: {}, positionals: { min: 2, max: 2 } }, args);
    if (!a) return 0;
    const [tenant, id] = a.positionals as [string, string];
    const w = await asUsage(usage, name, () => withRegistry(connect, (r) => r.update(tenant, id, { enabled }, "disabled with achd webhooks disable")));
    if (!w) {
      console.error(`${name}: tenant ${tenant} has no webhook ${id}`);
      return 1;
    }
    console.log(line(w));
    return 0;
  };
}

/** Runs `achd webhooks <sub> …`; returns the exit code. */
export function webhooksCmd(args: string[], connect: CliConnect): Promise<ExitCode> {
  return dispatchGroup("achd webhooks", USAGE, args, {
    add: async (rest) => {
      const a = parseCommand({ name: "achd webhooks add", usage: ADD_USAGE, options: { achievement: { type: "string", multiple: true }, disabled: { type: "boolean" }, backfill: { type: "boolean" } }, positionals: { min: 2, max: 2 } }, rest);
      if (!a) return 0;
      const [tenant, url] = a.positionals as [string, string];
      const spec = { url, ...(a.values.achievement ? { achievements: a.values.achievement } : {}), ...(a.values.disabled ? { enabled: false } : {}), ...(a.values.backfill ? { backfill: true } : {}) };
      const w = await asUsage(ADD_USAGE, "achd webhooks add", () => withRegistry(connect, (r) => r.create(tenant, spec)));
      // stdout carries the secret alone (achd webhooks add … > secret); the rest goes to stderr.
      console.error(`webhook ${w.id} for ${tenant} → ${w.url}; its signing secret, shown this once:`);
      console.log(w.secret);
      return 0;
    },
    list: async (rest) => {
      const a = parseCommand({ name: "achd webhooks list", usage: LIST_USAGE, options: {}, positionals: { min: 1, max: 1 } }, rest);
      if (!a) return 0;
      const list = await asUsage(LIST_USAGE, "achd webhooks list", () => withRegistry(connect, (r) => r.list(a.positionals[0]!)));
      for (const w of list) console.log(line(w));
      if (list.length === 0) console.error("no webhooks");
      return 0;
    },
    remove: async (rest) => {
      const a = parseCommand({ name: "achd webhooks remove", usage: REMOVE_USAGE, options: {}, positionals: { min: 2, max: 2 } }, rest);
      if (!a) return 0;
      const [tenant, id] = a.positionals as [string, string];
      if (!(await asUsage(REMOVE_USAGE, "achd webhooks remove", () => withRegistry(connect, (r) => r.remove(tenant, id))))) {
        console.error(`achd webhooks remove: tenant ${tenant} has no webhook ${id}`);
        return 1;
      }
      console.log(`webhook ${id} removed`);
      return 0;
    },
    enable: toggle(connect, true),
    disable: toggle(connect, false),
  });
}
