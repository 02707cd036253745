import type { IncomingMessage } from "node:http"
import { HttpServerRequest, HttpServerResponse } from "@effect/platform"
import { NodeHttpServerRequest } from "@effect/platform-node"
import { SignalApi } from "@p2pal/domain"
import * as Excerpt from "@p2pal/domain/Excerpt"
import { RateLimiter } from "@p2pal/infra/RateLimiter"
import type { RateLimited } from "@p2pal/infra/RateLimiter"
import { TransferStore } from "@p2pal/infra/TransferStore"
import { IceServers } from "./IceServers.js"
import { Shutdown } from "./Shutdown.js"
import type * as Store from "@p2pal/infra/TransferStore"
import { Data, Effect, Metric, ParseResult, Schema } from "effect"
import { ClientIp, limitKey } from "./ClientIp.js"
import * as Metrics from "./Metrics.js"

const StatusOf: Record<SignalApi.ApiErrorCode, number> = {
  bad_request: 400,
  unauthorized: 401,
  not_found: 404,
  already_claimed: 409,
  expired: 410,
  payload_too_large: 413,
  rate_limited: 429,
  unavailable: 503,
}

/** Every failure a client can cause ends as one of these, answered with an ApiErrorBody. */
export class ApiFailure extends Data.TaggedError("ApiFailure")<{
  readonly error: SignalApi.ApiErrorCode
  readonly message: string
  /** With `rate_limited`: whole seconds until the client may try again, sent as Retry-After. */
  readonly retryAfterSeconds?: number
}> {}

export const errorResponse = ({ error, message, retryAfterSeconds }: ApiFailure) =>
  HttpServerResponse.unsafeJson({ error, message } satisfies SignalApi.ApiErrorBody, {
    status: StatusOf[error],
    headers: retryAfterSeconds === undefined ? {} : { "retry-after": String(retryAfterSeconds) },
  })

type ServiceError =
  Store.TransferNotFound | Store.Rejected | Store.NameplatesExhausted | Store.StoreUnavailable | RateLimited

const Limited: Record<RateLimited["kind"], string> = {
  create: "new transfers",
  join: "joins",
  "failed-join": "failed joins",
}

const toApiFailure = (e: ServiceError): ApiFailure => {
  switch (e._tag) {
    case "TransferNotFound":
      return new ApiFailure({
        error: "not_found",
        message: "no transfer has this code: check it with the sender",
      })
    case "TransferExpired":
      return new ApiFailure({
        error: "expired",
        message: "this code has expired: ask the sender for a new one",
      })
    case "TransferEnded":
      // A completed transfer's code was used: saying "expired" would send the user looking at --ttl.
      return e.status === "completed"
        ? new ApiFailure({
            error: "already_claimed",
            message: "this code was already used: ask the sender for a new one",
          })
        : new ApiFailure({
            error: "expired",
            message: `this transfer is ${e.status}: ask the sender for a new code`,
          })
    case "AlreadyClaimed":
      return new ApiFailure({
        error: "already_claimed",
        message: "someone already used this code: ask the sender for a new one",
      })
    case "TransitionNotAllowed":
      return new ApiFailure({
        error: "bad_request",
        message: `a ${e.status} transfer does not accept ${e.event}`,
      })
    case "NameplatesExhausted":
    case "StoreUnavailable":
      return new ApiFailure({
        error: "unavailable",
        message: "the signal server cannot take transfers now: retry later",
      })
    case "RateLimited": {
      // Retry-After counts whole seconds; rounding down would send the client back too early.
      const seconds = Math.max(1, Math.ceil(e.retryAfterMs / 1000))
      return new ApiFailure({
        error: "rate_limited",
        message: `too many ${Limited[e.kind]} from this address: retry in ${seconds} s`,
        retryAfterSeconds: seconds,
      })
    }
  }
}

/** Answers every failure of `handler` with its error body; a rate-limit refusal is also counted and logged. */
const answering = <R>(
  handler: Effect.Effect<HttpServerResponse.HttpServerResponse, ApiFailure | ServiceError, R>,
) =>
  handler.pipe(
    Effect.tapErrorTag("RateLimited", ({ kind }) =>
      Effect.zipRight(
        Metric.increment(Metrics.rateLimited[kind]),
        Effect.logWarning("rate limited").pipe(Effect.annotateLogs({ kind })),
      ),
    ),
    Effect.catchAll((e) => errorResponse(e._tag === "ApiFailure" ? e : toApiFailure(e))),
  )

/**
 * Collects at most `limit` bytes. Past that it answers at once and leaves the rest unread for Node to
 * discard, so the client gets its 413 instead of a reset connection.
 */
const readText = (source: IncomingMessage, limit: number) =>
  Effect.async<string, ApiFailure>((resume) => {
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
      resume(
        Effect.fail(
          new ApiFailure({ error: "payload_too_large", message: `request body exceeds ${limit} bytes` }),
        ),
      )
    }
    const onEnd = () => {
      stop()
      resume(Effect.succeed(Buffer.concat(chunks).toString("utf8")))
    }
    const onError = (cause: Error) => {
      stop()
      resume(
        Effect.fail(new ApiFailure({ error: "bad_request", message: `unreadable body: ${cause.message}` })),
      )
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

const decodeBody = <A, I>(schema: Schema.Schema<A, I>) =>
  Effect.gen(function* () {
    const request = yield* HttpServerRequest.HttpServerRequest
    const text = yield* readText(
      NodeHttpServerRequest.toIncomingMessage(request),
      SignalApi.MaxRequestBodyBytes,
    )
    return yield* Schema.decodeUnknown(Schema.parseJson(schema))(text).pipe(
      Effect.mapError((e) => new ApiFailure({ error: "bad_request", message: parseErrorText(e) })),
    )
  })

const encodeMessage = Schema.encodeSync(SignalApi.ServerMessageFromJson)

/** The rate limiter and the key it counts this request's client under. */
const limiterForClient = Effect.all([RateLimiter, Effect.map(ClientIp, limitKey)])

/** Encoding what the store returned cannot fail: if it does, that is a bug, answered 500 and logged. */
const respond = <A, I>(schema: Schema.Schema<A, I>, body: A, status = 200) =>
  Effect.orDie(HttpServerResponse.schemaJson(schema)(body, { status }))

/** `room`: fails while the app holds as many transfers as it may (checked after the client's own limit). */
export const createTransfer = <R>(room: Effect.Effect<void, ApiFailure, R>) =>
  answering(
    Effect.gen(function* () {
      const [limiter, client] = yield* limiterForClient
      // Counted before the body is read, so a refusal costs less than any request it refuses.
      yield* limiter.hit("create", client)
      yield* room
      const { ttlSeconds } = yield* decodeBody(SignalApi.CreateTransferRequest)
      const store = yield* TransferStore
      const created = yield* store.create(ttlSeconds * 1000)
      yield* Metric.increment(Metrics.transfersCreated)
      yield* Effect.logInfo("transfer created").pipe(Effect.annotateLogs({ transferId: created.transferId }))
      return yield* respond(
        SignalApi.CreateTransferResponse,
        {
          nameplate: created.nameplate,
          transferId: created.transferId,
          token: created.senderToken,
          expiresAt: created.expiresAt,
          iceServers: yield* (yield* IceServers).forTransfer(created.transferId, created.expiresAt),
        },
        201,
      )
    }),
  )

/** What a join that named nothing claimable is answered: the answers a client guessing nameplates gets. */
const FailedJoin: ReadonlySet<SignalApi.ApiErrorCode> = new Set(["not_found", "expired", "already_claimed"])

export const joinTransfer = answering(
  Effect.gen(function* () {
    const [limiter, client] = yield* limiterForClient
    // Past its failed-join allowance a client is refused before the store hears its next guess.
    yield* limiter.check("failed-join", client)
    yield* limiter.hit("join", client)
    const { nameplate } = yield* decodeBody(SignalApi.JoinRequest)
    const store = yield* TransferStore
    // A concurrent failure may have used the last of the allowance first: this answer stands all the
    // same, and the next join is the one refused.
    const countFailure = Effect.catchTag(limiter.hit("failed-join", client), "RateLimited", () => Effect.void)
    const joined = yield* store.join(nameplate).pipe(
      Effect.mapError(toApiFailure),
      Effect.tapError((failure) => (FailedJoin.has(failure.error) ? countFailure : Effect.void)),
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
    return yield* respond(SignalApi.JoinResponse, {
      transferId: joined.transferId,
      token: joined.receiverToken,
      expiresAt: joined.expiresAt,
      iceServers: yield* (yield* IceServers).forTransfer(joined.transferId, joined.expiresAt),
    })
  }),
)

export const healthz = Effect.succeed(HttpServerResponse.unsafeJson({ status: "ok" }))

export const readyz = answering(
  Effect.gen(function* () {
    // A load balancer stops routing here while the sockets drain.
    if (yield* (yield* Shutdown).isBegun)
      return yield* new ApiFailure({ error: "unavailable", message: "shutting down" })
    const store = yield* TransferStore
    yield* store.ping.pipe(
      Effect.timeoutFail({
        duration: "2 seconds",
        onTimeout: () => new ApiFailure({ error: "unavailable", message: "the store did not answer" }),
      }),
    )
    return HttpServerResponse.unsafeJson({ status: "ready" })
  }),
)
