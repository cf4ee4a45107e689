/** `achd dlq list|show|redrive` — the dead-letter tools, over the configured server. */
import { readFileSync } from "node:fs";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import { loadConfig } from "../src/config/mod.ts";
import { listDeadLetters, redriveDeadLetter, showDeadLetter } from "../src/pipeline/mod.ts";
import { cliConnect, dispatchGroup, integerArg, parseCommand, type ExitCode } from "./cli.ts";

const LIST_USAGE = `usage: achd dlq list [--tenant T] [--limit N] [--from SEQ]
  list dead letters, oldest first, as JSON lines
  --tenant T    only this tenant's
  --limit N     at most N, 1 … 1000 (default 100)
  --from SEQ    from this DLQ sequence number on (≥ 1)`;
const SHOW_USAGE = `usage: achd dlq show <seq>…
  print dead letters with their body and headers (sequence numbers from achd dlq list)`;
const REDRIVE_USAGE = `usage: achd dlq redrive <seq>… [--body FILE]
  publish dead letters again and remove them from the DLQ
  --body FILE   publish this corrected body instead of the stored one`;
const USAGE = `usage: achd dlq list [--tenant T] [--limit N] [--from SEQ]
       achd dlq show <seq>…
       achd dlq redrive <seq>… [--body FILE]`;

async function withNats<T>(name: string, fn: (nc: NatsConnection) => Promise<T>): Promise<T> {
  const nc = await cliConnect(loadConfig(), name);
  try {
    return await fn(nc);
  } finally {
    await nc.close();
  }
}

/** The sequence-number arguments of show and redrive, each checked. */
function seqs(command: string, positionals: string[]): number[] {
  return positionals.map((p) => integerArg(command, "<seq> (a dead-letter sequence number from achd dlq list)", p, 1));
}

async function list(args: string[]): Promise<ExitCode> {
  const a = parseCommand(
    {
      name: "achd dlq list",
      usage: LIST_USAGE,
      options: { tenant: { type: "string" }, limit: { type: "integer", min: 1, max: 1000 }, from: { type: "integer", min: 1 } },
    },
    args,
  );
  if (!a) return 0;
  const { tenant, limit, from } = a.values;
  return withNats<ExitCode>("achd-dlq", async (nc) => {
    const found = await listDeadLetters(jetstream(nc), { ...(tenant ? { tenant } : {}), ...(limit ? { limit } : {}), ...(from ? { from } : {}) });
    for (const d of found) console.log(JSON.stringify(d));
    return 0;
  });
}

async function show(args: string[]): Promise<ExitCode> {
  const a = parseCommand({ name: "achd dlq show", usage: SHOW_USAGE, options: {}, positionals: { min: 1, max: Infinity } }, args);
  if (!a) return 0;
  const wanted = seqs("achd dlq show", a.positionals);
  return withNats<ExitCode>("achd-dlq", async (nc) => {
    const jsm = await jetstreamManager(nc);
    for (const seq of wanted) console.log(JSON.stringify(await showDeadLetter(jsm, seq), null, 2));
    return 0;
  });
}

async function redrive(args: string[]): Promise<ExitCode> {
  const a = parseCommand({ name: "achd dlq redrive", usage: REDRIVE_USAGE, options: { body: { type: "string" } }, positionals: { min: 1, max: Infinity } }, args);
  if (!a) return 0;
  const wanted = seqs("achd dlq redrive", a.positionals);
  const body = a.values.body ? readFileSync(a.values.body) : undefined;
  return withNats<ExitCode>("achd-dlq", async (nc) => {
    const js = jetstream(nc);
    const jsm = await jetstreamManager(nc);
    for (const seq of wanted) console.log(JSON.stringify(await redriveDeadLetter(js, jsm, seq, body)));
    return 0;
  });
}

/** Runs `achd dlq <sub> …`; returns the exit code. */
export function dlqCmd(args: string[]): Promise<ExitCode> {
  return dispatchGroup("achd dlq", USAGE, args, { list, show, redrive });
}
