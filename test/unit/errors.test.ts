import { errors } from "@nats-io/transport-node";
import { JetStreamApiError, JetStreamError, type ApiError } from "@nats-io/jetstream";
import { jserrors, JetStreamStatusError } from "@nats-io/jetstream/internal";
import { describe, expect, it } from "vitest";
import { isCasFailure, isNotFound, isSlowAnswer, isTooLarge, isTransient, JsApiCodes, TransientError } from "../../src/nats/errors.ts";

/** A JetStream API error as nats.js builds it from the server's answer (`{code, err_code, description}`, as in nats-server's errors.json). */
const api = (code: number, err_code: number, description: string, opts?: ErrorOptions) => new JetStreamApiError({ code, err_code, description } satisfies ApiError, opts);

// The server's own answers (status, err_code, description from nats-server's errors.json).
const wrongLastSeq = api(400, 10071, "wrong last sequence: 7");
const wrongLastSeqNoSeq = api(400, 10164, "wrong last sequence");
const streamNotFound = new jserrors.StreamNotFoundError({ code: 404, err_code: 10059, description: "stream not found" });
const consumerNotFound = new jserrors.ConsumerNotFoundError({ code: 404, err_code: 10014, description: "consumer not found" });
const noMessage = api(404, 10037, "no message found");
const tooLarge = api(400, 10054, "message size exceeds maximum allowed");
const headerTooLarge = api(400, 10097, "header size exceeds maximum allowed of 64k");
const tempUnavailable = api(503, 10008, "JetStream system temporarily unavailable");
const notLeader = api(500, 10009, "JetStream cluster can not handle request");
const notReady = api(503, 10163, "expected last sequence per subject temporarily unavailable");
const insufficient = api(503, 10023, "insufficient resources");
const streamOffline = api(500, 10118, "stream is offline");
const badRequest = api(400, 10003, "bad request");
const sealed = api(400, 10109, "invalid operation on sealed stream");
const nameInUse = api(400, 10058, "stream name already in use with a different configuration");
const accountNotEnabled = api(503, 10039, "JetStream not enabled for account");
// What nats.js throws for a request nobody answers (a server whose JetStream is not up), and for an account without JetStream.
const noResponders = new errors.RequestError("no responders: '$JS.API.INFO'", { cause: new errors.NoRespondersError("$JS.API.INFO") });
const jsNotUp = new jserrors.JetStreamNotEnabled("jetstream is not enabled", { cause: noResponders });
const jsNotForAccount = new jserrors.JetStreamNotEnabled(accountNotEnabled.message, { cause: accountNotEnabled });
const payloadTooBig = errors.InvalidArgumentError.format("payload", "max_payload size exceeded");

describe("JetStream API codes", () => {
  it("are the server's, and agree with the ones nats.js names", () => {
    expect(JsApiCodes.StreamWrongLastSequence).toBe(10071);
    expect(JsApiCodes.StreamWrongLastSequenceUnknown).toBe(10164);
    expect(JsApiCodes.StreamNotFound).toBe(10059);
    expect(JsApiCodes.ConsumerNotFound).toBe(10014);
    expect(JsApiCodes.ClusterNotAvailable).toBe(10008);
    expect(JsApiCodes.StreamMessageExceedsMaximum).toBe(10054);
    expect(new Set(Object.values(JsApiCodes)).size).toBe(Object.keys(JsApiCodes).length);
  });
});

describe("error predicates", () => {
  it("isCasFailure: a compare-and-set that lost, by code", () => {
    expect(isCasFailure(wrongLastSeq)).toBe(true);
    expect(isCasFailure(wrongLastSeqNoSeq)).toBe(true);
    for (const e of [streamNotFound, tooLarge, tempUnavailable, new Error("wrong last sequence: 3"), undefined]) expect(isCasFailure(e)).toBe(false);
  });

  it("isNotFound: a stream, consumer or message that is not there", () => {
    for (const e of [streamNotFound, consumerNotFound, noMessage, new JetStreamStatusError("message not found", 404)]) expect(isNotFound(e)).toBe(true);
    for (const e of [wrongLastSeq, tempUnavailable, new Error("stream not found"), new JetStreamStatusError("no responders", 503)]) expect(isNotFound(e)).toBe(false);
  });

  it("isTooLarge: over the stream's max_msg_size, the header limit or the server's max_payload, also wrapped", () => {
    for (const e of [tooLarge, headerTooLarge, payloadTooBig, new Error("put failed", { cause: tooLarge })]) expect(isTooLarge(e)).toBe(true);
    for (const e of [wrongLastSeq, new Error("maximum payload exceeded"), errors.InvalidArgumentError.format("subject", "is empty")]) expect(isTooLarge(e)).toBe(false);
  });

  it("isTransient: connection states are on the allow-list", () => {
    const connection = [
      new errors.TimeoutError(),
      new errors.NoRespondersError("$KV.ach_state.x"),
      noResponders,
      new errors.RequestError("connection disconnected"),
      new errors.RequestError("connection closed"),
      new errors.ClosedConnectionError(),
      new errors.DrainingConnectionError(),
      new errors.ConnectionError("connection refused"),
      jsNotUp,
      new JetStreamStatusError("no responders", 503),
      new TransientError("replicas catching up"),
      new Error("wrapped", { cause: new errors.TimeoutError() }),
    ];
    for (const e of connection) expect(isTransient(e), `${e.name}: ${e.message}`).toBe(true);
  });

  it("isTransient: server codes for a cluster electing, catching up or out of room are on it", () => {
    for (const e of [tempUnavailable, notLeader, notReady, insufficient, streamOffline]) expect(isTransient(e), e.message).toBe(true);
  });

  it("isTransient: refusals, conflicts and the work's own failures are not", () => {
    const poison = [
      tooLarge,
      headerTooLarge,
      payloadTooBig,
      new Error("retry", { cause: tooLarge }),
      wrongLastSeq,
      streamNotFound,
      badRequest,
      sealed,
      nameInUse,
      jsNotForAccount,
      new errors.RequestError("Permissions Violation for Publish to \"x\"", { cause: new errors.PermissionViolationError("Permissions Violation for Publish to \"x\"", "publish", "x") }),
      new errors.AuthorizationError("Authorization Violation"),
      new JetStreamError("invalid ack response"),
      new JetStreamStatusError("bad request", 400),
      new SyntaxError("Unexpected token n in JSON"),
      new Error("connection timed out"), // text decides nothing
      "a string",
      undefined,
    ];
    for (const e of poison) expect(isTransient(e), String(e)).toBe(false);
  });

  it("isSlowAnswer: no answer yet, narrower than transient", () => {
    for (const e of [new errors.TimeoutError(), noResponders, jsNotUp, tempUnavailable]) expect(isSlowAnswer(e)).toBe(true);
    for (const e of [insufficient, jsNotForAccount, badRequest, nameInUse, new errors.RequestError("connection closed")]) expect(isSlowAnswer(e)).toBe(false);
  });
});
