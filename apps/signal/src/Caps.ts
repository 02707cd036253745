import { TransferStore } from "@p2pal/infra/TransferStore"
import { Context, Effect, Layer, Metric } from "effect"
import { ApiFailure } from "./Api.js"
import { ClientIp, limitKey } from "./ClientIp.js"
import type * as Flags from "./Flags.js"
import * as Metrics from "./Metrics.js"

/** The caps this instance was started with. */
export class Caps extends Context.Tag("@p2pal/signal/Caps")<Caps, Flags.Caps>() {}

/**
 * When a refused client may try again: a held transfer or a socket frees up when one ends, which the
 * app cannot predict; a few seconds keeps a retrying client from adding to the flood.
 */
const RetryAfterSeconds = 5

const refuse = (cap: Metrics.Cap, failure: ApiFailure) =>
  Effect.zipRight(
    Metric.increment(Metrics.refused[cap]),
    Effect.zipRight(Effect.logWarning("refused: cap reached").pipe(Effect.annotateLogs({ cap })), failure),
  )

/** Fails with a 503 once the store holds `--max-transfers` transfers; checked before each create. */
export const roomForTransfer = Effect.gen(function* () {
  const { transfers } = yield* Caps
  const held = yield* (yield* TransferStore).held.pipe(
    Effect.mapError(
      () => new ApiFailure({ error: "unavailable", message: "the store did not answer: retry later" }),
    ),
  )
  yield* Metric.set(Metrics.transfersHeld, held)
  if (held >= transfers)
    return yield* refuse(
      "transfers",
      new ApiFailure({
        error: "unavailable",
        message: "the signal server holds as many transfers as it may: retry later",
        retryAfterSeconds: RetryAfterSeconds,
      }),
    )
})

/** The relay WebSockets open on this instance, in all and by client (limitKey). */
export class WebSockets extends Context.Tag("@p2pal/signal/WebSockets")<
  WebSockets,
  {
    /** Runs `handler` (the relay) as one open socket of the current client, if the caps leave room. */
    readonly admit: <A, E, R>(
      handler: Effect.Effect<A, E, R>,
    ) => Effect.Effect<A, E | ApiFailure, R | ClientIp>
  }
>() {
  static readonly layer = Layer.effect(
    WebSockets,
    Effect.map(Caps, (caps) => {
      const byClient = new Map<string, number>()
      let total = 0
      const release = (client: string) =>
        Effect.zipRight(
          Effect.sync(() => {
            total--
            const left = (byClient.get(client) ?? 1) - 1
            if (left === 0) byClient.delete(client)
            else byClient.set(client, left)
          }),
          Metric.modify(Metrics.websocketsActive, -1),
        )
      // Checked and counted with no yield in between, so concurrent upgrades cannot both take the last slot.
      const acquire = (client: string) =>
        Effect.suspend(() => {
          if (total >= caps.webSockets)
            return refuse(
              "websockets",
              new ApiFailure({
                error: "unavailable",
                message: "the signal server has as many sockets open as it may: retry later",
                retryAfterSeconds: RetryAfterSeconds,
              }),
            )
          const mine = byClient.get(client) ?? 0
          if (mine >= caps.webSocketsPerClient)
            return refuse(
              "websockets-per-client",
              new ApiFailure({
                error: "rate_limited",
                message: `too many open sockets from this address: retry in ${RetryAfterSeconds} s`,
                retryAfterSeconds: RetryAfterSeconds,
              }),
            )
          total++
          byClient.set(client, mine + 1)
          return Effect.as(Metric.increment(Metrics.websocketsActive), client)
        })
      return {
        admit: (handler) =>
          Effect.flatMap(ClientIp, (ip) =>
            Effect.acquireUseRelease(acquire(limitKey(ip)), () => handler, release),
          ),
      }
    }),
  )
}
