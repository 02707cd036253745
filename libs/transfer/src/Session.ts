import { type Ids, JoinCode, Manifest, type SignalApi } from "@p2pal/domain"
import { CodeMismatch, CodeRejected, PeerFailed, ServerFailed, UsageError } from "@p2pal/domain/Errors"
import * as IceServers from "@p2pal/domain/IceServers"
import { type ConnectError, PeerLink } from "@p2pal/infra/PeerLink"
import { SignalClient, type Session as SignalSession } from "@p2pal/infra/SignalClient"
import { Clock, Duration, Effect, Either, Exit, Option, type Scope } from "effect"
import { randomInt } from "node:crypto"
import { Checkpoints } from "./Checkpoints.js"
import { Progress } from "./Progress.js"
import * as Receiver from "./Receiver.js"
import * as SecureSignal from "./SecureSignal.js"
import * as SendCheckpoint from "./SendCheckpoint.js"
import * as Sender from "./Sender.js"
import type { Sources } from "./Sources.js"

export interface PeerOptions {
  readonly server: string
  /** The user's own ICE servers (--stun, --turn): used before the ones the signal app offers. */
  readonly iceServers: ReadonlyArray<IceServers.IceServer>
  readonly relayOnly: boolean
  /** An ICE server the signal app offered that cannot be used, and why. */
  readonly onIceIgnored: (reason: string) => Effect.Effect<void>
}

/** How long the two peers may take to open a DataChannel once both are on the signal app. */
const OpenTimeout = Duration.seconds(30)
/** After Done, how long the receiver waits for the sender to hang up, so Done is not lost in a close. */
const HangUpGrace = Duration.seconds(5)

const serverGone = (server: string) => new ServerFailed({ server, detail: "it closed the connection" })

/**
 * The abort reasons a side gives the signal app when the PAKE or a sealed message fails; the server
 * passes them on to the other side as `peer-left`, which then stops with the same explanation.
 */
const MismatchReason: Record<CodeMismatch["cause"], string> = {
  "wrong-code": "the code did not match",
  tampered: "a connection message was tampered with",
}

/** The signal app's socket as a relay of opaque strings; the peer leaving or the socket closing ends it. */
const relay = (server: string, session: SignalSession, side: SecureSignal.Side): SecureSignal.RawPort => ({
  send: (data) => session.send({ _tag: "signal", data }),
  next: session.next.pipe(
    Effect.flatMap(
      Option.match({
        onNone: () => Effect.fail<ConnectError>(serverGone(server)),
        onSome: (message) => {
          if (message._tag !== "peer-left") return Effect.succeed(message)
          const cause = (Object.keys(MismatchReason) as Array<CodeMismatch["cause"]>).find(
            (c) => MismatchReason[c] === message.reason,
          )
          return Effect.fail<ConnectError>(
            cause === undefined
              ? new PeerFailed({ message: `the peer left (${message.reason})` })
              : new CodeMismatch({ side, cause }),
          )
        },
      }),
    ),
    Effect.repeat({ until: (message) => message._tag === "signal" }),
    Effect.map((message) => (message._tag === "signal" ? message.data : "")),
  ),
})

/**
 * Runs `connect` (the PAKE, then the peer connection over the sealed relay); on a wrong code or
 * tampering it tells the signal app, which ends the transfer (the code cannot be guessed again) and
 * tells the other side why.
 */
const burnOnMismatch = <A, E extends { readonly _tag: string }, R>(
  session: SignalSession,
  connect: Effect.Effect<A, E, R>,
) =>
  connect.pipe(
    Effect.tapError((e) =>
      e instanceof CodeMismatch
        ? session.send({ _tag: "abort", reason: MismatchReason[e.cause] }).pipe(Effect.ignore)
        : Effect.void,
    ),
  )

/**
 * The PAKE over the relay, then the peer connection over the sealed relay; the offerer is the sender.
 * A wrong code or tampering burns the code on the way out.
 */
const connectSecurely = (
  server: string,
  session: SignalSession,
  options: PeerOptions & {
    readonly side: SecureSignal.Side
    readonly words: readonly [string, string]
    readonly transferId: string
    /** The ICE servers the signal app offered with the token. */
    readonly offered: ReadonlyArray<SignalApi.IceServer>
    readonly onVerified: (verification: string) => Effect.Effect<void>
  },
) =>
  burnOnMismatch(
    session,
    Effect.gen(function* () {
      const { side } = options
      const ice = IceServers.plan([
        ...options.iceServers.map(Either.right),
        ...options.offered.map(IceServers.parseIssued),
      ])
      yield* Effect.forEach(ice.ignored, options.onIceIgnored, { discard: true })
      if (options.relayOnly && !ice.servers.some((s) => s.kind === "turn"))
        return yield* new UsageError({
          message: "--relay-only needs a TURN server: --turn, or a signal app run with --turn-url",
        })
      const secured = yield* SecureSignal.secure(relay(server, session, side), options)
      yield* options.onVerified(secured.verification)
      const channel = yield* (yield* PeerLink).connect({
        role: side === "sender" ? "offerer" : "answerer",
        iceServers: ice.servers,
        relayOnly: options.relayOnly,
        signal: secured.port,
        openTimeout: OpenTimeout,
      })
      return { secured, channel }
    }),
  )

export interface SendSession extends PeerOptions {
  readonly ttl: Duration.Duration
  readonly chunkSize: number
  /** Seal chunk payloads with a key from the PAKE, on top of DTLS. */
  readonly encrypt: boolean
  readonly sources: Sources
  /** `--skip-errors`: see Sender.SendOptions. */
  readonly skipUnreadable?: Sender.SendOptions["skipUnreadable"]
  /** How long the checkpoint stays resumable after its last save. */
  readonly checkpointTtl: Duration.Duration
  /** `send --resume`: the transfer the checkpoint belongs to and when it began; `sources` come from it. */
  readonly resume?: { readonly transferId: Ids.TransferId; readonly createdAt: number } | undefined
  /** The checkpoint is saved under this id, the one `send --resume` takes. */
  readonly onCheckpoint: (transferId: Ids.TransferId) => Effect.Effect<void>
  /** The code is ready: show it to the user. */
  readonly onCode: (code: string) => Effect.Effect<void>
  /** The PAKE succeeded: the string both sides can compare (`--verify`). */
  readonly onVerified: (verification: string) => Effect.Effect<void>
  readonly onConnected: (progress: Progress) => Effect.Effect<void, never, Scope.Scope>
}

/**
 * Offers the sources under a new code and sends them, keeping the sender's checkpoint under the
 * transfer's id (the first session's, for `send --resume`) until the receiver has verified every file.
 */
export const send = Effect.fn("Session.send")(function* (options: SendSession) {
  const client = yield* SignalClient
  const created = yield* client.create(options.server, {
    ttlSeconds: Duration.toSeconds(options.ttl),
  })
  // A resumed transfer keeps its first id: both sides' checkpoints are keyed by it.
  const transferId = options.resume?.transferId ?? created.transferId
  const checkpoint = yield* SendCheckpoint.make(
    yield* Checkpoints,
    transferId,
    options.sources,
    options.checkpointTtl,
    options.resume?.createdAt ?? (yield* Clock.currentTimeMillis),
  )
  // Saved before anyone joins, so that from here on even a crash leaves something to resume.
  yield* checkpoint.save
  yield* options.onCheckpoint(transferId)
  const path = yield* sendSession(options, created, transferId, checkpoint.acked).pipe(
    // Whatever stopped it, the latest acknowledgements are worth keeping.
    Effect.onExit((exit) => (Exit.isFailure(exit) ? Effect.ignore(checkpoint.save) : Effect.void)),
  )
  yield* checkpoint.remove
  return path
})

/** One session: the code, the PAKE, the peer connection, and the files, offered under `transferId`. */
const sendSession = (
  options: SendSession,
  created: SignalApi.CreateTransferResponse,
  transferId: Ids.TransferId,
  acked: Sender.AckedFiles,
) =>
  Effect.gen(function* () {
    const client = yield* SignalClient
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
    const { secured, channel } = yield* connectSecurely(options.server, session, {
      ...options,
      side: "sender",
      words,
      transferId: created.transferId,
      offered: created.iceServers,
    })
    const { sources } = options
    const progress = new Progress(Manifest.totalBytes(sources.manifest))
    yield* options.onConnected(progress)
    yield* Sender.send(
      channel,
      { ...sources, manifest: { ...sources.manifest, transfer: transferId } },
      {
        chunkSize: options.chunkSize,
        progress,
        payloadKey: options.encrypt ? secured.payloadKey : undefined,
        skipUnreadable: options.skipUnreadable,
        acked,
      },
    )
    yield* session.send({ _tag: "complete" }).pipe(Effect.ignore)
    return channel.path()
  })

export interface ReceiveSession extends PeerOptions, Receiver.ReceiveOptions {
  readonly code: JoinCode.JoinCode
  readonly onVerified: (verification: string) => Effect.Effect<void>
}

export const receive = Effect.fn("Session.receive")(function* (options: ReceiveSession) {
  const client = yield* SignalClient
  const joined = yield* client.join(options.server, { nameplate: options.code.nameplate })
  const session = yield* client.open(options.server, joined.token)
  const { secured, channel } = yield* connectSecurely(options.server, session, {
    ...options,
    side: "receiver",
    words: options.code.words,
    transferId: joined.transferId,
    offered: joined.iceServers,
  })
  yield* Receiver.receive(channel, { ...options, payloadKey: secured.payloadKey })
  // Read while the connection is up: the sender hangs up next.
  const path = channel.path()
  yield* channel.closed.pipe(Effect.timeout(HangUpGrace), Effect.ignore)
  return path
})
