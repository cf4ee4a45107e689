/**
 * Outbound safety: which addresses a webhook may reach. A webhook URL is
 * chosen by a tenant, so without this check the engine would be a proxy
 * into its own network (SSRF): loopback, private ranges, link-local (cloud
 * metadata at 169.254.169.254) and unspecified addresses are refused,
 * unless `webhooks.allowPrivate` says otherwise. The check runs twice: on
 * the resolved addresses at registration, and on the address each
 * connection actually uses at delivery (a DNS answer may change between
 * the two).
 */
import { lookup as dnsLookup, type LookupAddress, type LookupAllOptions, type LookupOneOptions } from "node:dns";
import { BlockList, isIP } from "node:net";

/** A webhook URL the engine will not call; the message says why. */
export class WebhookAddressError extends Error {
  override name = "WebhookAddressError";
}

const blocked = new BlockList();
for (const [net, prefix] of [
  ["0.0.0.0", 8], // "this network", unspecified
  ["10.0.0.0", 8],
  ["100.64.0.0", 10], // carrier-grade NAT: private in practice
  ["127.0.0.0", 8],
  ["169.254.0.0", 16], // link-local, cloud metadata
  ["172.16.0.0", 12],
  ["192.168.0.0", 16],
  ["224.0.0.0", 4], // multicast
  ["240.0.0.0", 4], // reserved and broadcast
] as const) {
  blocked.addSubnet(net, prefix, "ipv4");
}
for (const [net, prefix] of [
  ["::", 128], // unspecified
  ["::1", 128],
  ["fc00::", 7], // unique local
  ["fe80::", 10], // link-local
  ["ff00::", 8], // multicast
] as const) {
  blocked.addSubnet(net, prefix, "ipv6");
}

/** Whether `address` (an IP literal) is loopback, private, link-local, unspecified or multicast. */
export function isPrivateAddress(address: string): boolean {
  const family = isIP(address);
  if (family === 4) return blocked.check(address, "ipv4");
  if (family !== 6) return true;
  const lower = address.toLowerCase();
  // An IPv4 address written as IPv6 (::ffff:10.0.0.1) reaches the IPv4 host: judge that one.
  const mapped = /^(?:0{0,4}:){0,5}ffff:(\d+\.\d+\.\d+\.\d+)$/.exec(lower.startsWith("::") ? lower.slice(2) : lower);
  if (mapped) return blocked.check(mapped[1]!, "ipv4");
  return blocked.check(lower, "ipv6");
}

/** The host of a URL as `lookup` takes it (IPv6 literals without brackets). */
export function urlHost(url: URL): string {
  return url.hostname.startsWith("[") ? url.hostname.slice(1, -1) : url.hostname;
}

/**
 * Checks a webhook URL as registered: http or https, no credentials in it,
 * at most 2048 characters, and (unless `allowPrivate`) a host whose every
 * resolved address is public. Throws {@link WebhookAddressError} naming
 * what is wrong. A host that does not resolve is refused too: a typo
 * should be found now, not after a day of retries.
 */
export async function checkWebhookUrl(raw: string, allowPrivate: boolean): Promise<URL> {
  if (raw.length > MAX_URL) throw new WebhookAddressError(`url: at most ${MAX_URL} characters`);
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new WebhookAddressError(`url: ${JSON.stringify(raw.slice(0, 200))} is not an absolute URL (e.g. https://example.com/hooks/achd)`);
  }
  if (url.protocol !== "https:" && url.protocol !== "http:") throw new WebhookAddressError(`url: the scheme must be https or http, not ${url.protocol.replace(/:$/, "")}`);
  if (url.username || url.password) throw new WebhookAddressError("url: must not carry a user name or password (the signature authenticates the engine)");
  if (url.hash) throw new WebhookAddressError("url: must not have a #fragment");
  const host = urlHost(url);
  let addresses: string[];
  if (isIP(host)) addresses = [host];
  else {
    try {
      addresses = (await lookupAll(host)).map((a) => a.address);
    } catch (err) {
      throw new WebhookAddressError(`url: the host ${host} does not resolve (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
    }
  }
  if (!allowPrivate) {
    const bad = addresses.filter(isPrivateAddress);
    if (bad.length) throw new WebhookAddressError(`url: the host ${host} is ${bad.join(", ")}, a loopback, private, link-local or unspecified address; webhooks go to public addresses only (webhooks.allowPrivate allows them)`);
  }
  return url;
}

function lookupAll(host: string): Promise<LookupAddress[]> {
  return new Promise((resolve, reject) => dnsLookup(host, { all: true }, (err, addresses) => (err ? reject(err) : resolve(addresses))));
}

type LookupCallback = (err: NodeJS.ErrnoException | null, address: string | LookupAddress[], family?: number) => void;

/**
 * A `lookup` for `http.request` that resolves like `dns.lookup` and drops
 * every address {@link isPrivateAddress} refuses; with none left, the
 * connection fails with {@link WebhookAddressError}. Node connects only to
 * what this returns, so the address checked is the address used.
 */
export function safeLookup(hostname: string, options: LookupOneOptions | LookupAllOptions | number, callback: LookupCallback): void {
  const opts = typeof options === "number" ? { family: options } : options;
  dnsLookup(hostname, { ...opts, all: true }, (err, addresses) => {
    if (err) return callback(err, opts.all ? [] : "", 0);
    const ok = addresses.filter((a) => !isPrivateAddress(a.address));
    if (ok.length === 0) {
      return callback(new WebhookAddressError(`${hostname} resolves to ${addresses.map((a) => a.address).join(", ")}: a loopback, private, link-local or unspecified address (webhooks.allowPrivate allows it)`), opts.all ? [] : "", 0);
    }
    if (opts.all) return callback(null, ok);
    callback(null, ok[0]!.address, ok[0]!.family);
  });
}

/** The longest webhook URL taken. */
export const MAX_URL = 2048;
