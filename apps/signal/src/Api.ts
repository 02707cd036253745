import type { IncomingMessage } from "node:http"
import { HttpServerRequest, HttpServerResponse } from "@effect/platform"
import { NodeHttpServerRequest } from "@effect/platform-node"
import { SignalApi } from "@p2pal/domain"
import { TransferStore } from "@p2pal/infra/TransferStore"
import type * as Store from "@p2pal/infra/TransferStore"
import { Data, Effect, ParseResult, Schema } from "effect"

const StatusOf: Record<SignalApi.ApiErrorCode, number> = {
  bad_request: 400,
  unauthorized: 401,
  not_found: 404,
  already_claimed: 409,
  expired: 410,
  payload_too_large: 413,
  unavailable: 503,
}

/** Every failure a client can cause ends as one of these, answered with an ApiErrorBody. */
export class ApiFailure extends Data.TaggedError("ApiFailure")<{
  readonly error: SignalApi.ApiErrorCode
  readonly message: string
}> {}

export const errorResponse = ({ error, message }: ApiFailure) =>
  HttpServerResponse.unsafeJson({ error, message } satisfies SignalApi.ApiErrorBody, {
    status: StatusOf[error],
  })

type StoreError =
  | Store.TransferNotFound
  | Store.Rejected
  | Store.Unauthorized
  | Store.MailboxFull
  | Store.NameplatesExhausted
  | Store.StoreUnavailable

const fromStore = (e: StoreError): ApiFailure => {
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
      return new ApiFailure({
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
    case "Unauthorized":
      return new ApiFailure({ error: "unauthorized", message: "unknown token" })
    case "MailboxFull":
      return new ApiFailure({ error: "unavailable", message: "too many undelivered messages" })
    case "NameplatesExhausted":
    case "StoreUnavailable":
      return new ApiFailure({
        error: "unavailable",
        message: "the signal server cannot take transfers now: retry later",
      })
  }
}

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
  const [issue] = ParseResult.ArrayFormatter.formatErrorSync(e)
  const text =
    issue === undefined
      ? e.message
      : issue.path.length === 0
        ? issue.message
        : `${issue.path.join(".")}: ${issue.message}`
  if (text.length <= MaxErrorTextChars) return text
  // Never split a surrogate pair: half of one is not text.
  const end = /[\uD800-\uDBFF]/.test(text.charAt(MaxErrorTextChars - 1))
    ? MaxErrorTextChars - 1
    : MaxErrorTextChars
  return `${text.slice(0, end)}...`
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

export const createTransfer = Effect.gen(function* () {
  const { ttlSeconds } = yield* decodeBody(SignalApi.CreateTransferRequest)
  const store = yield* TransferStore
  const created = yield* store.create(ttlSeconds * 1000).pipe(Effect.mapError(fromStore))
  return yield* HttpServerResponse.schemaJson(SignalApi.CreateTransferResponse)(
    {
      nameplate: created.nameplate,
      transferId: created.transferId,
      token: created.senderToken,
      expiresAt: created.expiresAt,
      iceServers: [],
    },
    { status: 201 },
  )
}).pipe(Effect.catchTag("ApiFailure", errorResponse))

export const joinTransfer = Effect.gen(function* () {
  const { nameplate } = yield* decodeBody(SignalApi.JoinRequest)
  const store = yield* TransferStore
  const joined = yield* store.join(nameplate).pipe(Effect.mapError(fromStore))
  return yield* HttpServerResponse.schemaJson(SignalApi.JoinResponse)({
    transferId: joined.transferId,
    token: joined.receiverToken,
    expiresAt: joined.expiresAt,
    iceServers: [],
  })
}).pipe(Effect.catchTag("ApiFailure", errorResponse))

export const healthz = Effect.succeed(HttpServerResponse.unsafeJson({ status: "ok" }))

export const readyz = Effect.gen(function* () {
  const store = yield* TransferStore
  yield* store.ping.pipe(
    Effect.timeoutFail({
      duration: "2 seconds",
      onTimeout: () => new ApiFailure({ error: "unavailable", message: "the store did not answer" }),
    }),
    Effect.mapError((e) => (e._tag === "ApiFailure" ? e : fromStore(e))),
  )
  return HttpServerResponse.unsafeJson({ status: "ready" })
}).pipe(Effect.catchTag("ApiFailure", errorResponse))
