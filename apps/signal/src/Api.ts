import type { IncomingMessage } from "node:http"
import { HttpApp, HttpServerRequest, HttpServerResponse } from "@effect/platform"
import { NodeHttpServerRequest } from "@effect/platform-node"
import { SignalApi } from "@p2pal/domain"
import * as Excerpt from "@p2pal/domain/Excerpt"
import * as Answer from "@p2pal/domain/SignalHttpApi"
import { RateLimiter } from "@p2pal/infra/RateLimiter"
import type { RateLimited } from "@p2pal/infra/RateLimiter"
import { TransferStore } from "@p2pal/infra/TransferStore"
import { IceServers } from "./IceServers.js"
import { Shutdown } from "./Shutdown.js"
import type * as Store from "@p2pal/infra/TransferStore"
import { Data, Effect, Metric, ParseResult, Schema } from "effect"
import { ClientIp, limitKey } from "./ClientIp.js"
import * as Metrics from "./Metrics.js"

/** How the relay (Relay.ts) answers a request it cannot upgrade; the REST endpoints fail with SignalHttpApi's errors. */
export class ApiFailure extends Data.TaggedError("ApiFailure")<{
  readonly error: "bad_request"
  readonly message: string
}> {}

export const errorResponse = ({ error, message }: ApiFailure) =>
  HttpServerResponse.unsafeJson({ error, message } satisfies SignalApi.ApiErrorBody, { status: 400 })

/** Fails with `error`, answered with a Retry-After of `seconds`: the declared errors carry a body only. */
export const refuseFor =
  (seconds: number) =>
  <E>(error: E): Effect.Effect<never, E> =>
    Effect.zipRight(
      HttpApp.appendPreResponseHandler((_, response) =>
        Effect.succeed(HttpServerResponse.setHeader(response, "retry-after", String(seconds))),
      ),
      Effect.fail(error),
    )

const Limited: Record<RateLimited["kind"], string> = {
  create: "new transfers",
  join: "joins",
  "failed-join": "failed joins",
}

const unavailable = () =>
  new Answer.Unavailable({ message: "the signal server cannot take transfers now: retry later" })

/** A rate-limiter call whose refusal is counted, logged, and answered 429 with Retry-After. */
const limited = <A>(effect: Effect.Effect<A, RateLimited | Store.StoreUnavailable>) =>
  effect.pipe(
    Effect.tapErrorTag("RateLimited", ({ kind }) =>
      Effect.zipRight(
        Metric.increment(Metrics.rateLimited[kind]),
        Effect.logWarning("rate limited").pipe(Effect.annotateLogs({ kind })),
      ),
    ),
    Effect.catchTags({
      RateLimited: ({ kind, retryAfterMs }) => {
        // Retry-After counts whole seconds; rounding down would send the client back too early.
        const seconds = Math.max(1, Math.ceil(retryAfterMs / 1000))
        const message = `too many ${Limited[kind]} from this address: retry in ${seconds} s`
        return refuseFor(seconds)(new Answer.RateLimited({ message }))
      },
      StoreUnavailable: () => Effect.fail(unavailable()),
    }),
  )

/** What a join the store refused is answered. */
const joinRefused = (e: Store.TransferNotFound | Store.Rejected | Store.StoreUnavailable) => {
  switch (e._tag) {
    case "TransferNotFound":
      return new Answer.NotFound({ message: "no transfer has this code: check it with the sender" })
    case "TransferExpired":
      return new Answer.Expired({ message: "this code has expired: ask the sender for a new one" })
    case "TransferEnded":
      // A completed transfer's code was used: saying "expired" would send the user looking at --ttl.
      return e.status === "completed"
        ? new Answer.AlreadyClaimed({ message: "this code was already used: ask the sender for a new one" })
        : new Answer.Expired({ message: `this transfer is ${e.status}: ask the sender for a new code` })
    case "AlreadyClaimed":
      return new Answer.AlreadyClaimed({
        message: "someone already used this code: ask the sender for a new one",
      })
    case "TransitionNotAllowed":
      return new Answer.BadRequest({ message: `a ${e.status} transfer does not accept ${e.event}` })
    case "StoreUnavailable":
      return unavailable()
  }
}

/**
 * Collects at most `limit` bytes. Past that it answers at once and leaves the rest unread for Node to
 * discard, so the client gets its 413 instead of a reset connection.
 */
const readText = (source: IncomingMessage, limit: number) =>
  Effect.async<string, Answer.PayloadTooLarge | Answer.BadRequest>((resume) => {
    const chunks: Array<Buffer> = []
    let size = 0
    const stop = () => {
      source.off("data", onData)
      source.off("end", onEnd)
      source.off("error", onError)
    }
    const onData = (chunk: Buffer) => {
      size += chunk.length
      if (size <= limit) return void chunks.push(chunk)
      stop()
      resume(Effect.fail(new Answer.PayloadTooLarge({ message: `request body exceeds ${limit} bytes` })))
    }
    const onEnd = () => {
      stop()
      resume(Effect.succeed(Buffer.concat(chunks).toString("utf8")))
    }
    const onError = (cause: Error) => {
      stop()
      resume(Effect.fail(new Answer.BadRequest({ message: `unreadable body: ${cause.message}` })))
    }
    source.on("data", onData)
    source.on("end", onEnd)
    source.on("error", onError)
    return Effect.sync(stop)
  })

/** Schema messages quote the offending value; a client's input is never echoed back longer than this. */
const MaxErrorTextChars = 100

/** The first problem only, with its path: enough to fix the request, short enough for a close reason. */
export const parseErrorText = (e: ParseResult.ParseError) => {
  const { path, message } = Excerpt.firstIssue(e)
  return Excerpt.chars(path === "" ? message : `${path}: ${message}`, MaxErrorTextChars)
}

/**
 * The request's body as `schema`, read here rather than by HttpApiBuilder: that one picks a parser by
 * content type (`curl -d` sends a form, `fetch` text) and would answer a body over the cap with a reset
 * and malformed JSON with a 500. Here any body is JSON, capped, and refused with a 413 or a 400.
 */
const decodeBody = <A, I>(schema: Schema.Schema<A, I>) =>
  Effect.gen(function* () {
    const request = yield* HttpServerRequest.HttpServerRequest
    const text = yield* readText(
      NodeHttpServerRequest.toIncomingMessage(request),
      SignalApi.MaxRequestBodyBytes,
    )
    return yield* Schema.decodeUnknown(Schema.parseJson(schema))(text).pipe(
      Effect.mapError((e) => new Answer.BadRequest({ message: parseErrorText(e) })),
    )
  })

const encodeMessage = Schema.encodeSync(SignalApi.ServerMessageFromJson)

/** The rate limiter and the key it counts this request's client under. */
const limiterForClient = Effect.all([RateLimiter, Effect.map(ClientIp, limitKey)])

/** `room`: fails while the app holds as many transfers as it may (checked after the client's own limit). */
export const createTransfer = <E, R>(room: Effect.Effect<void, E, R>) =>
  Effect.gen(function* () {
    const [limiter, client] = yield* limiterForClient
    // Counted before the body is read, so a refusal costs less than any request it refuses.
    yield* limited(limiter.hit("create", client))
    yield* room
    const { ttlSeconds } = yield* decodeBody(SignalApi.CreateTransferRequest)
    const created = yield* Effect.mapError((yield* TransferStore).create(ttlSeconds * 1000), unavailable)
    yield* Metric.increment(Metrics.transfersCreated)
    yield* Effect.logInfo("transfer created").pipe(Effect.annotateLogs({ transferId: created.transferId }))
    return {
      nameplate: created.nameplate,
      transferId: created.transferId,
      token: created.senderToken,
      expiresAt: created.expiresAt,
      iceServers: yield* (yield* IceServers).forTransfer(created.transferId, created.expiresAt),
    }
  })

/** The answers a join that named nothing claimable gets: the ones a client guessing nameplates gets. */
const FailedJoin: ReadonlySet<string> = new Set(["NotFound", "Expired", "AlreadyClaimed"])

export const joinTransfer = Effect.gen(function* () {
  const [limiter, client] = yield* limiterForClient
  // Past its failed-join allowance a client is refused before the store hears its next guess.
  yield* limited(Effect.zipRight(limiter.check("failed-join", client), limiter.hit("join", client)))
  const { nameplate } = yield* decodeBody(SignalApi.JoinRequest)
  const store = yield* TransferStore
  // A concurrent failure may have used the last of the allowance first: this answer stands all the
  // same, and the next join is the one refused.
  const countFailure = limiter.hit("failed-join", client).pipe(
    Effect.catchTag("RateLimited", () => Effect.void),
    Effect.mapError(unavailable),
  )
  const joined = yield* Effect.mapError(store.join(nameplate), joinRefused).pipe(
    Effect.tapError((answer) => (FailedJoin.has(answer._tag) ? countFailure : Effect.void)),
  )
  // Told now rather than when the receiver's socket connects: a claim that goes no further (someone
  // who knows only the nameplate) is then seen by the sender, who makes a new code.
  yield* store
    .post(joined.transferId, "sender", encodeMessage({ _tag: "peer-claimed" }))
    .pipe(
      Effect.catchAll((e) =>
        Effect.logWarning("sender not told of the claim").pipe(Effect.annotateLogs({ why: e._tag })),
      ),
    )
  yield* Metric.increment(Metrics.transfersJoined)
  yield* Effect.logInfo("transfer joined").pipe(Effect.annotateLogs({ transferId: joined.transferId }))
  return {
    transferId: joined.transferId,
    token: joined.receiverToken,
    expiresAt: joined.expiresAt,
    iceServers: yield* (yield* IceServers).forTransfer(joined.transferId, joined.expiresAt),
  }
})

export const healthz = Effect.succeed({ status: "ok" } as const)

export const readyz = Effect.gen(function* () {
  // A load balancer stops routing here while the sockets drain.
  if (yield* (yield* Shutdown).isBegun) return yield* new Answer.Unavailable({ message: "shutting down" })
  yield* Effect.mapError((yield* TransferStore).ping, unavailable).pipe(
    Effect.timeoutFail({
      duration: "2 seconds",
      onTimeout: () => new Answer.Unavailable({ message: "the store did not answer" }),
    }),
  )
  return { status: "ready" } as const
})
