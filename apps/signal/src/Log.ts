import { type HttpApp, HttpServerError, HttpServerRequest } from "@effect/platform"
import { Cause, Clock, Effect, Exit, Logger, LogLevel } from "effect"
import { ClientIp } from "./ClientIp.js"

/** One JSON object per line on stderr, for log collectors; stdout carries only the two listening lines (metrics, API). */
export const layer = Logger.replace(Logger.defaultLogger, Logger.withConsoleError(Logger.jsonLogger))

/** A path is the client's text: a long one is cut rather than copied whole into every log line. */
const MaxPathChars = 200

/**
 * Logs one line per request when it ends (a WebSocket's when the socket closes). Not
 * `HttpMiddleware.logger`: that one logs the whole URL, and the WebSocket's query string carries its
 * token. Everything logged while the request runs carries its method, path and client IP.
 */
export const requests = <E, R>(app: HttpApp.Default<E, R>) =>
  Effect.gen(function* () {
    const request = yield* HttpServerRequest.HttpServerRequest
    const clientIp = yield* ClientIp
    const path = request.url.split("?", 1)[0]!.slice(0, MaxPathChars)
    return yield* Effect.annotateLogs(timed(app), { method: request.method, path, clientIp })
  })

const timed = <E, R>(app: HttpApp.Default<E, R>) =>
  Effect.gen(function* () {
    const started = yield* Clock.currentTimeMillis
    const exit = yield* Effect.exit(app)
    const durationMs = (yield* Clock.currentTimeMillis) - started
    // The response the server derives from a failed exit; a client that went away is no failure of ours.
    const [response] = Exit.isSuccess(exit) ? [exit.value] : yield* HttpServerError.causeResponse(exit.cause)
    const failure = Exit.isFailure(exit) && !Cause.isInterruptedOnly(exit.cause) ? [exit.cause] : []
    const level =
      failure.length > 0 ? LogLevel.Error : response.status >= 500 ? LogLevel.Warning : LogLevel.Info
    yield* Effect.logWithLevel(level, "request", ...failure).pipe(
      Effect.annotateLogs({ status: response.status, durationMs }),
    )
    return yield* exit
  })
