import { type Ids, JoinCode, Manifest, type NameRules, type SignalApi } from "@p2pal/domain"
import { PeerFailed } from "@p2pal/domain/Errors"
import { type ConnectedPath, PeerLink } from "@p2pal/infra/PeerLink"
import { SignalClient, type SocketChange } from "@p2pal/infra/SignalClient"
import { Clock, Context, Deferred, Duration, Effect, Exit } from "effect"
import { randomInt } from "node:crypto"
import type { Writable } from "node:stream"
import { Checkpoints } from "./Checkpoints.js"
import * as CodeOffer from "./CodeOffer.js"
import type { CompressOptions } from "./Compression.js"
import { overConnections, type PeerOptions } from "./Connection.js"
import { Hasher } from "./Hasher.js"
import { Progress } from "./Progress.js"
import * as RateLimit from "./RateLimit.js"
import * as Receiver from "./Receiver.js"
import * as SendCheckpoint from "./SendCheckpoint.js"
import * as Sender from "./Sender.js"
import * as SignalRelay from "./SignalRelay.js"
import type { Sources } from "./Sources.js"
import { type Sink, TransferEvent } from "./TransferEvent.js"

export type { PeerOptions } from "./Connection.js"

/** One bucket for the whole transfer, so the cap holds across reconnects. */
const limitOf = (limitRate: number | undefined) =>
  limitRate === undefined ? Effect.succeed(undefined) : RateLimit.make(limitRate)

/** After Done, how long the receiver waits for the sender to hang up, so Done is not lost in a close. */
const HangUpGrace = Duration.seconds(5)

export interface SendOptions extends PeerOptions {
  readonly ttl: Duration.Duration
  readonly chunkSize: number
  /** Seal chunk payloads with a key from the PAKE, on top of DTLS. */
  readonly encrypt: boolean
  readonly sources: Sources
  /** `--skip-errors`: a file that cannot be read is left out (a Skipped event), not the end of the transfer. */
  readonly skipUnreadable: boolean
  /** How long the checkpoint stays resumable after its last save. */
  readonly checkpointTtl: Duration.Duration
  /** `send --resume`: the transfer the checkpoint belongs to and when it began; `sources` come from it. */
  readonly resume?: { readonly transferId: Ids.TransferId; readonly createdAt: number } | undefined
  /** `--compress` and `--compress-level`. */
  readonly compress?: CompressOptions | undefined
  /** `--limit-rate`, bytes per second on the wire. */
  readonly limitRate?: number | undefined
}

export interface Sent {
  /** The transfer's counters at the end: file bytes and wire bytes, files auto sent raw. */
  readonly progress: Progress
  /** The id the checkpoint was kept under (gone now the receiver has verified every file). */
  readonly transferId: Ids.TransferId
  /** The last connection's path, read while it was up. */
  readonly path: ConnectedPath | undefined
  /** Bytes sent a second time because a dropped connection lost them on the way. */
  readonly resent: number
}

export interface ReceiveOptions extends PeerOptions {
  readonly code: JoinCode.JoinCode
  readonly out: string
  readonly overwrite: boolean
  /** See Receiver.ReceiveOptions. */
  readonly windowsNames: boolean
  readonly renameUnsafe: boolean
  readonly stdout?: Writable | undefined
  /** How long the checkpoint stays resumable after its last save. */
  readonly checkpointTtl: Duration.Duration
  /** `--limit-rate`, bytes per second written. */
  readonly limitRate?: number | undefined
}

export interface Received {
  /** The last connection's path, read while it was up. */
  readonly path: ConnectedPath | undefined
  /** Names saved under escaped ones (`--rename-unsafe`). */
  readonly renamed: ReadonlyArray<NameRules.Renamed>
  /** What `send --text` sent, verified; nothing was written to disk. */
  readonly text: Uint8Array | undefined
}

/**
 * Offers the sources under a new code and sends them, keeping the sender's checkpoint under the
 * transfer's id (the first session's, for `send --resume`) until the receiver has verified every file.
 */
const send = Effect.fn("Transfer.send")(function* (options: SendOptions, events: Sink) {
  if (options.sources.manifest.stream !== undefined) return yield* sendStream(options, events)
  const client = yield* SignalClient
  const created = yield* client.create(options.server, { ttlSeconds: Duration.toSeconds(options.ttl) })
  // A resumed transfer keeps its first id: both sides' checkpoints are keyed by it.
  const transferId = options.resume?.transferId ?? created.transferId
  const checkpoint = yield* SendCheckpoint.make(
    yield* Checkpoints,
    transferId,
    options.sources,
    options.checkpointTtl,
    options.resume?.createdAt ?? (yield* Clock.currentTimeMillis),
    events.offer(TransferEvent.CheckpointSaved({ transferId })),
  )
  if (options.resume !== undefined) yield* checkpoint.keep
  const progress = new Progress(Manifest.totalBytes(options.sources.manifest))
  const limit = yield* limitOf(options.limitRate)
  const path = yield* CodeOffer.offering(options, events, created, (created) =>
    sendSession(options, events, created, transferId, checkpoint.acked, progress, limit),
  ).pipe(
    // Whatever stopped it, the latest acknowledgements are worth keeping.
    Effect.onExit((exit) => (Exit.isFailure(exit) ? checkpoint.update : Effect.void)),
  )
  yield* checkpoint.remove
  return { transferId, path, resent: progress.resent, progress } satisfies Sent
})

/**
 * A text or a pipe: read once, so nothing is kept to resume, and a drop ends it (no reconnect could
 * send again what was read).
 */
const sendStream = (options: SendOptions, events: Sink) =>
  Effect.gen(function* () {
    const client = yield* SignalClient
    const created = yield* client.create(options.server, { ttlSeconds: Duration.toSeconds(options.ttl) })
    const progress = new Progress(Manifest.totalBytes(options.sources.manifest))
    const acked = { bytes: new Map<number, number>(), onChange: Effect.void, accepted: Effect.void }
    const limit = yield* limitOf(options.limitRate)
    const path = yield* CodeOffer.offering(options, events, created, (created) =>
      sendSession({ ...options, maxRetries: 0 }, events, created, undefined, acked, progress, limit),
    ).pipe(Effect.mapError(cannotResume(options.sources.manifest)))
    return { transferId: created.transferId, path, resent: 0, progress } satisfies Sent
  })

/** Why a lost connection ends this transfer for good, if it does: what went is gone. */
const notResumable = (manifest: Manifest.Manifest | undefined, toStdout: boolean) =>
  manifest?.stream !== undefined
    ? `${manifest.stream === "pipe" ? "a pipe" : "a text"} is read once, so it cannot be resumed or reconnected: send it again`
    : toStdout
      ? "what went to stdout cannot be taken back, so recv --out - cannot be resumed or reconnected: receive it again"
      : undefined

/** A lost connection that cannot be carried on: says so, rather than suggest a resume, and is not reconnected. */
const cannotResume =
  (manifest: Manifest.Manifest | undefined, toStdout = false) =>
  <E>(e: E): E => {
    const why = notResumable(manifest, toStdout)
    return e instanceof PeerFailed && e.lost === true && why !== undefined
      ? (new PeerFailed({ message: `${e.message}; ${why}` }) as E)
      : e
  }

/** Tells the user of a signal app that went away before the peers met, and of its return. */
const signalChange = (events: Sink) => (change: SocketChange) =>
  Effect.asVoid(
    events.offer(
      change._tag === "lost"
        ? TransferEvent.SignalLost({ why: change.why, retryFor: change.retryFor })
        : TransferEvent.SignalBack(),
    ),
  )

/** One session: the code, the PAKE, the peer connection, and the files, offered under `transferId`. */
const sendSession = (
  options: SendOptions,
  events: Sink,
  created: SignalApi.CreateTransferResponse,
  /** Undefined for a stream: nothing of it can be resumed, so the receiver keeps no checkpoint either. */
  transferId: Ids.TransferId | undefined,
  acked: Sender.AckedFiles,
  progress: Progress,
  limit: RateLimit.RateLimit | undefined,
) =>
  Effect.gen(function* () {
    const client = yield* SignalClient
    const words = JoinCode.pickWords((bound) => randomInt(bound))
    // The code is shown once its socket is open: from then on a signal app that goes away is reported.
    const session = yield* client.open(options.server, created.token, signalChange(events))
    yield* events.offer(
      TransferEvent.CodeReady({ code: JoinCode.format({ words, nameplate: created.nameplate }) }),
    )
    // The claimer, and a receiver who tries the code later, learn that it is void.
    const voidCode = <A, E, R>(self: Effect.Effect<A, E, R>) =>
      Effect.tapError(self, (e) =>
        e instanceof SignalRelay.ClaimAbandoned ? SignalRelay.leave(session, "code-voided") : Effect.void,
      )
    yield* voidCode(SignalRelay.awaitPeer(options.server, session, options.ttl))
    const { sources } = options
    /** The latest connection's path, read when it opened: the end may come through the relay instead. */
    let latest: ConnectedPath | undefined
    const path = yield* overConnections(
      session,
      { ...options, side: "sender", words, transferId: created.transferId, offered: created.iceServers },
      events,
      (channel, { resumed, payloadKey }) =>
        Effect.gen(function* () {
          latest = channel.path()
          if (!resumed)
            yield* events.offer(TransferEvent.Started({ progress, manifest: sources.manifest, already: 0 }))
          yield* Sender.send(
            channel,
            transferId === undefined
              ? sources
              : { ...sources, manifest: { ...sources.manifest, transfer: transferId } },
            {
              chunkSize: options.chunkSize,
              progress,
              payloadKey: options.encrypt ? payloadKey : undefined,
              skipUnreadable: options.skipUnreadable
                ? (file) => events.offer(TransferEvent.Skipped({ file }))
                : undefined,
              acked,
              compress: options.compress,
              limit,
            },
          ).pipe(
            // Not lost any more, so not reconnected: a text or a pipe cannot carry on.
            Effect.mapError(cannotResume(sources.manifest)),
          )
          return channel.path()
        }),
      // Every file is there, though the connection went before Done crossed it.
      Effect.sync(() => {
        progress.bytes = progress.totalBytes
        return latest
      }),
    ).pipe(voidCode)
    // Only bookkeeping for the signal app: the files are there whether or not it hears of it.
    yield* session.send({ _tag: "complete" }).pipe(Effect.timeout("2 seconds"), Effect.ignore)
    return path
  })

/** Asks whoever reads the events whether to accept `manifest`, and waits for the answer. */
const ask = (events: Sink, manifest: Manifest.Manifest) =>
  Effect.gen(function* () {
    const reply = yield* Deferred.make<boolean>()
    yield* events.offer(TransferEvent.Confirm({ manifest, reply }))
    return yield* Deferred.await(reply).pipe(Effect.onInterrupt(() => Deferred.interrupt(reply)))
  })

const receive = Effect.fn("Transfer.receive")(function* (options: ReceiveOptions, events: Sink) {
  const client = yield* SignalClient
  const store = yield* Checkpoints
  const joined = yield* client.join(options.server, { nameplate: options.code.nameplate })
  const session = yield* client.open(options.server, joined.token, signalChange(events))
  const limit = yield* limitOf(options.limitRate)
  /** What the user accepted, and the counters on screen: a connection after a drop carries them on. */
  let accepted: { readonly manifest: Manifest.Manifest; readonly progress: Progress } | undefined
  let offered: Manifest.Manifest | undefined
  const { path, renamed, text } = yield* overConnections(
    session,
    {
      ...options,
      side: "receiver",
      words: options.code.words,
      transferId: joined.transferId,
      offered: joined.iceServers,
    },
    events,
    (channel, { resumed, payloadKey, following, tellVerified }) =>
      Effect.gen(function* () {
        const before = resumed ? accepted : undefined
        // The sender may hang up the moment it has Done, taking the selected pair with it.
        const atStart = channel.path()
        const { renamed, text } = yield* following(
          Receiver.receive(channel, {
            out: options.out,
            overwrite: options.overwrite,
            windowsNames: options.windowsNames,
            renameUnsafe: options.renameUnsafe,
            stdout: options.stdout,
            onSkipped: (file) => events.offer(TransferEvent.Skipped({ file })),
            checkpoints: { store, ttl: options.checkpointTtl },
            payloadKey,
            limit,
            // After a drop the sender must offer what the user accepted, and nothing else.
            accepted: before?.manifest,
            confirm: (manifest) => (before === undefined ? ask(events, manifest) : Effect.succeed(true)),
            progress: before?.progress,
            onStart: (progress, manifest) => {
              offered = manifest
              accepted = { manifest, progress }
              return before === undefined
                ? events.offer(TransferEvent.Started({ progress, manifest, already: progress.bytes }))
                : Effect.void
            },
          }).pipe(
            // Not lost any more, so not reconnected: a text or a pipe cannot carry on.
            Effect.mapError((e) => cannotResume(offered, options.stdout !== undefined)(e)),
          ),
        )
        yield* tellVerified
        // Read while the connection is up, if it still is: the sender hangs up next.
        const path = channel.path() ?? atStart
        yield* channel.closed.pipe(Effect.timeout(HangUpGrace), Effect.ignore)
        return { path, renamed, text }
      }),
  )
  return { path, renamed, text } satisfies Received
}, Effect.scoped)

/**
 * Sending and receiving, each reporting what the user should see as it happens to an event sink and
 * returning what the command prints at the end.
 */
export class Transfer extends Effect.Service<Transfer>()("@p2pal/transfer/Transfer", {
  effect: Effect.gen(function* () {
    const services = Context.make(PeerLink, yield* PeerLink).pipe(
      Context.add(SignalClient, yield* SignalClient),
      Context.add(Checkpoints, yield* Checkpoints),
      Context.add(Hasher, yield* Hasher),
    )
    return {
      send: (options: SendOptions, events: Sink) => Effect.provide(send(options, events), services),
      receive: (options: ReceiveOptions, events: Sink) => Effect.provide(receive(options, events), services),
    }
  }),
}) {}
