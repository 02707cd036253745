import type { HttpServerRequest } from "@effect/platform"
import { RateLimited, Unavailable } from "@p2pal/domain/SignalHttpApi"
import { TransferStore } from "@p2pal/infra/TransferStore"
import { Context, Effect, Layer, Metric } from "effect"
import { refuseFor } from "./Api.js"
import { ClientIp, limitKey, type TrustProxy } from "./ClientIp.js"
import type * as Flags from "./Flags.js"
import * as Metrics from "./Metrics.js"

/** The caps this instance was started with. */
export class Caps extends Context.Tag("@p2pal/signal/Caps")<Caps, Flags.Caps>() {}

/**
 * When a refused client may try again: a held transfer or a socket frees up when one ends, which the
 * app cannot predict; a few seconds keeps a retrying client from adding to the flood.
 */
const RetryAfterSeconds = 5

const refuse = <E>(cap: Metrics.Cap, failure: E) =>
  Effect.zipRight(
    Metric.increment(Metrics.refused[cap]),
    Effect.zipRight(
      Effect.logWarning("refused: cap reached").pipe(Effect.annotateLogs({ cap })),
      refuseFor(RetryAfterSeconds)(failure),
    ),
  )

/** Fails with a 503 once the store holds `--max-transfers` transfers; checked before each create. */
export const roomForTransfer = Effect.gen(function* () {
  const { transfers } = yield* Caps
  const held = yield* (yield* TransferStore).held.pipe(
    Effect.mapError(() => new Unavailable({ message: "the store did not answer: retry later" })),
  )
  yield* Metric.set(Metrics.transfersHeld, held)
  if (held >= transfers)
    return yield* refuse(
      "transfers",
      new Unavailable({ message: "the signal server holds as many transfers as it may: retry later" }),
    )
})

/** The relay WebSockets open on this instance, in all and by client (limitKey). */
export class WebSockets extends Context.Tag("@p2pal/signal/WebSockets")<
  WebSockets,
  {
    /** Runs `handler` (the relay) as one open socket of the current client, if the caps leave room. */
    readonly admit: <A, E, R>(
      handler: Effect.Effect<A, E, R>,
    ) => Effect.Effect<A, E | Unavailable | RateLimited, R | HttpServerRequest.HttpServerRequest | TrustProxy>
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
        Effect.suspend((): Effect.Effect<string, Unavailable | RateLimited> => {
          if (total >= caps.webSockets)
            return refuse(
              "websockets",
              new Unavailable({
                message: "the signal server has as many sockets open as it may: retry later",
              }),
            )
          const mine = byClient.get(client) ?? 0
          if (mine >= caps.webSocketsPerClient)
            return refuse(
              "websockets-per-client",
              new RateLimited({
                message: `too many open sockets from this address: retry in ${RetryAfterSeconds} s`,
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
