import type { SignalApi } from "@p2pal/domain"
import { PeerFailed, UsageError } from "@p2pal/domain/Errors"
import * as IceServers from "@p2pal/domain/IceServers"
import { type Channel, PeerLink } from "@p2pal/infra/PeerLink"
import type { Session } from "@p2pal/infra/SignalClient"
import { Duration, Effect, Either, Ref } from "effect"
import * as Reconnect from "./Reconnect.js"
import * as Rounds from "./Rounds.js"
import * as SecureSignal from "./SecureSignal.js"
import * as SignalRelay from "./SignalRelay.js"
import { type Sink, TransferEvent } from "./TransferEvent.js"

/** How this side reaches the peer: the flags send and recv share. */
export interface PeerOptions {
  readonly server: string
  /** The user's own ICE servers (--stun, --turn): used before the ones the signal app offers. */
  readonly iceServers: ReadonlyArray<IceServers.IceServer>
  readonly relayOnly: boolean
  /** `--max-retries`: attempts to reconnect after a drop before giving up (the checkpoint stays). */
  readonly maxRetries: number
  /** `--retry-backoff`: the sender's wait before its first attempt; it doubles, jittered, each time. */
  readonly retryBackoff: Duration.Duration
}

export interface LinkOptions extends PeerOptions {
  readonly side: SecureSignal.Side
  readonly words: readonly [string, string]
  readonly transferId: string
  /** The ICE servers the signal app offered with the token. */
  readonly offered: ReadonlyArray<SignalApi.IceServer>
}

export interface Context extends Reconnect.Context {
  readonly payloadKey: Buffer
  /** The receiver, once every file verified: tells the sender through the relay too (see Verified). */
  readonly tellVerified: Effect.Effect<void>
}

/**
 * Runs `use` over a peer connection, and over a new one after each drop (Reconnect.run). The PAKE over
 * the relay comes first (a wrong code or tampering burns the code on the way out, and a stop tells the
 * other side); every connection then signals over the sealed relay in its own round. node-datachannel
 * has no ICE restart, so a new connection is a new PeerConnection.
 *
 * `whenVerified` (the sender's): what the run ends with if the receiver says through the relay that it
 * verified every file, whatever the connection is doing then.
 */
export const overConnections = <A, E, R>(
  session: Session,
  options: LinkOptions,
  events: Sink,
  use: (channel: Channel, context: Context) => Effect.Effect<A, E | Reconnect.Overtaken, R>,
  whenVerified?: Effect.Effect<A>,
) =>
  Effect.gen(function* () {
    /** The peers have had a connection: from here on a drop is reconnected, and a stop is told to the other. */
    const met = yield* Ref.make(false)
    return yield* Effect.gen(function* () {
      const { side } = options
      const ice = IceServers.plan([
        ...options.iceServers.map(Either.right),
        ...options.offered.map(IceServers.parseIssued),
      ])
      for (const reason of ice.ignored) yield* events.offer(TransferEvent.IceIgnored({ reason }))
      if (options.relayOnly && !ice.servers.some((s) => s.kind === "turn"))
        return yield* new UsageError({
          message: "--relay-only needs a TURN server: --turn, or a signal app run with --turn-url",
        })
      const exchange = SecureSignal.secure(SignalRelay.relay(options.server, session, side, met), options)
      const secured = yield* side === "sender"
        ? exchange.pipe(
            // A claimer that goes silent or leaves before its PAKE message may know only the nameplate.
            Effect.timeoutFail({
              duration: SignalRelay.ClaimTimeout,
              onTimeout: () =>
                new SignalRelay.ClaimAbandoned({
                  why: `the code exchange did not follow within ${Duration.format(SignalRelay.ClaimTimeout)}`,
                }),
            }),
            Effect.catchTag("PeerFailed", (e) => new SignalRelay.ClaimAbandoned({ why: e.message })),
          )
        : exchange.pipe(
            // A signal app that dies between the two sides' PAKE messages must not leave them waiting for good.
            Effect.timeoutFail({
              duration: Reconnect.OpenTimeout,
              onTimeout: () => new PeerFailed({ message: "the other side did not finish the code exchange" }),
            }),
          )
      yield* events.offer(TransferEvent.Verified({ verification: secured.verification }))
      const rounds = yield* Rounds.make(secured.port)
      const link = yield* PeerLink
      const tellVerified = rounds.tellVerified.pipe(Effect.timeout("2 seconds"), Effect.ignore)
      const connected = Reconnect.run({
        follower: side === "receiver",
        maxRetries: options.maxRetries,
        backoff: options.retryBackoff,
        rounds,
        met,
        connect: (round) =>
          link
            .connect({
              role: side === "sender" ? "offerer" : "answerer",
              iceServers: ice.servers,
              relayOnly: options.relayOnly,
              signal: rounds.port(round),
              lanes: rounds.lanes(round),
              openTimeout: round === 0 ? Reconnect.OpenTimeout : Reconnect.AttemptTimeout,
            })
            .pipe(
              // A reconnect attempt that fails is the drop lasting longer: the next attempt may work.
              Effect.mapError((e) =>
                round > 0 && e._tag === "PeerFailed" ? new PeerFailed({ message: e.message, lost: true }) : e,
              ),
            ),
        refresh: session.refresh,
        use: (channel, context) => use(channel, { ...context, payloadKey: secured.payloadKey, tellVerified }),
        onReconnecting: (attempt, of, why) => events.offer(TransferEvent.Reconnecting({ attempt, of, why })),
        onReconnected: (path) => events.offer(TransferEvent.Reconnected({ path })),
        giveUp: SignalRelay.leave(session, "gave-up"),
      })
      return yield* whenVerified === undefined
        ? connected
        : Effect.raceFirst(connected, Effect.zipRight(rounds.verified, whenVerified))
    }).pipe(
      Effect.tapError((e) =>
        Effect.flatMap(Ref.get(met), (hasMet) => {
          const reason = SignalRelay.farewell(e, hasMet)
          return reason === undefined ? Effect.void : SignalRelay.leave(session, reason)
        }),
      ),
      Effect.onInterrupt(() => SignalRelay.leave(session, "stopped")),
    )
  })
