import { JoinCode, Manifest, PeerSignal } from "@p2pal/domain"
import { CodeRejected, PeerFailed, ServerFailed } from "@p2pal/domain/Errors"
import { type ConnectError, PeerLink } from "@p2pal/infra/PeerLink"
import { SignalClient, type Session as SignalSession } from "@p2pal/infra/SignalClient"
import { Duration, Effect, Option, Schema, type Scope, Stream } from "effect"
import { randomInt } from "node:crypto"
import { Progress } from "./Progress.js"
import * as Receiver from "./Receiver.js"
import * as Sender from "./Sender.js"
import type { Sources } from "./Sources.js"

export interface PeerOptions {
  readonly server: string
  readonly stun: ReadonlyArray<string>
}

/** How long the two peers may take to open a DataChannel once both are on the signal app. */
const OpenTimeout = Duration.seconds(30)
/** After Done, how long the receiver waits for the sender to hang up, so Done is not lost in a close. */
const HangUpGrace = Duration.seconds(5)

const serverGone = (server: string) => new ServerFailed({ server, detail: "it closed the connection" })

/** The signal app's socket as the peer link's signaling path. */
const signalPort = (server: string, session: SignalSession) => ({
  send: (signal: PeerSignal.PeerSignal) =>
    session.send({ _tag: "signal", data: Schema.encodeSync(PeerSignal.PeerSignalFromJson)(signal) }),
  incoming: Stream.repeatEffectOption(
    session.next.pipe(
      Effect.mapError((e): Option.Option<ConnectError> => Option.some(e)),
      Effect.flatMap(
        Option.match({
          // Only a channel that is already open can do without signaling; the peer link ignores it then.
          onNone: () => Effect.fail(Option.some<ConnectError>(serverGone(server))),
          onSome: (message) =>
            message._tag === "peer-left"
              ? Effect.fail(
                  Option.some<ConnectError>(new PeerFailed({ message: `the peer left (${message.reason})` })),
                )
              : Effect.succeed(message),
        }),
      ),
    ),
  ).pipe(
    Stream.filterMap((message) =>
      message._tag === "signal"
        ? Schema.decodeOption(PeerSignal.PeerSignalFromJson)(message.data)
        : Option.none(),
    ),
  ),
})

export interface SendSession extends PeerOptions {
  readonly ttl: Duration.Duration
  readonly chunkSize: number
  readonly sources: Sources
  /** The code is ready: show it to the user. */
  readonly onCode: (code: string) => Effect.Effect<void>
  readonly onConnected: (progress: Progress) => Effect.Effect<void, never, Scope.Scope>
}

export const send = Effect.fn("Session.send")(function* (options: SendSession) {
  const client = yield* SignalClient
  const peers = yield* PeerLink
  const created = yield* client.create(options.server, {
    ttlSeconds: Duration.toSeconds(options.ttl),
  })
  const words = JoinCode.pickWords((bound) => randomInt(bound))
  yield* options.onCode(JoinCode.format({ words, nameplate: created.nameplate }))
  const session = yield* client.open(options.server, created.token)

  yield* session.next.pipe(
    Effect.flatMap(
      Option.match({ onNone: () => Effect.fail(serverGone(options.server)), onSome: Effect.succeed }),
    ),
    Effect.repeat({ until: (message) => message._tag === "peer-joined" }),
    // The TTL we asked for, not the server's expiresAt: the two machines' clocks need not agree.
    Effect.timeoutFail({ duration: options.ttl, onTimeout: () => new CodeRejected({ reason: "expired" }) }),
  )
  const channel = yield* peers.connect({
    role: "offerer",
    stun: options.stun,
    signal: signalPort(options.server, session),
    openTimeout: OpenTimeout,
  })
  const progress = new Progress(Manifest.totalBytes(options.sources.manifest))
  yield* options.onConnected(progress)
  yield* Sender.send(channel, options.sources, { chunkSize: options.chunkSize, progress })
  yield* session.send({ _tag: "complete" }).pipe(Effect.ignore)
  return channel.path()
})

export interface ReceiveSession extends PeerOptions, Receiver.ReceiveOptions {
  readonly code: JoinCode.JoinCode
}

export const receive = Effect.fn("Session.receive")(function* (options: ReceiveSession) {
  const client = yield* SignalClient
  const peers = yield* PeerLink
  const joined = yield* client.join(options.server, { nameplate: options.code.nameplate })
  const session = yield* client.open(options.server, joined.token)
  const channel = yield* peers.connect({
    role: "answerer",
    stun: options.stun,
    signal: signalPort(options.server, session),
    openTimeout: OpenTimeout,
  })
  yield* Receiver.receive(channel, options)
  yield* channel.closed.pipe(Effect.timeout(HangUpGrace), Effect.ignore)
})
