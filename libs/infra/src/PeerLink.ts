import { PeerSignal } from "@p2pal/domain"
import type * as IceServers from "@p2pal/domain/IceServers"
import { type CodeMismatch, type CodeRejected, PeerFailed, type ServerFailed } from "@p2pal/domain/Errors"
import {
  Clock,
  Context,
  Deferred,
  Duration,
  Effect,
  Exit,
  Layer,
  Mailbox,
  Queue,
  Schedule,
  Scope,
  Stream,
} from "effect"
import * as ndc from "node-datachannel"

/** Why setting up the connection failed: the peer, the signal server refusing the session, or tampering. */
export type ConnectError = PeerFailed | CodeRejected | ServerFailed | CodeMismatch

/** How the two peers reach each other before the DataChannel exists (the signal app's relay). */
export interface SignalPort {
  readonly send: (signal: PeerSignal.PeerSignal) => Effect.Effect<void, PeerFailed>
  readonly incoming: Stream.Stream<PeerSignal.PeerSignal, ConnectError>
}

export interface ConnectOptions {
  readonly role: "offerer" | "answerer"
  readonly iceServers: ReadonlyArray<IceServers.IceServer>
  /**
   * Only relayed (TURN) candidates, ours and the peer's: the peer never learns this machine's
   * addresses, and the connection goes through the relay or not at all.
   */
  readonly relayOnly: boolean
  readonly signal: SignalPort
  readonly openTimeout: Duration.DurationInput
}

export interface ConnectedPath {
  readonly local: string
  readonly remote: string
  /** Through a TURN server (either end's selected candidate is a relay). */
  readonly relayed: boolean
  readonly rttMs: number | undefined
}

/** One open, reliable, ordered DataChannel to the peer. */
export interface Channel {
  /**
   * Sends binary messages in order, in one synchronous burst for as long as the send buffer stays under
   * its high-water mark, and suspends only while it is above.
   */
  readonly send: (...messages: ReadonlyArray<Uint8Array>) => Effect.Effect<void, PeerFailed>
  /**
   * Incoming binary messages in order; once the connection is gone, and everything that arrived before
   * was taken, it fails. Unbounded here: the transfer protocol's ack window bounds it.
   */
  readonly incoming: Mailbox.ReadonlyMailbox<Uint8Array, PeerFailed>
  /** Fails when the channel or the connection goes away. */
  readonly closed: Effect.Effect<never, PeerFailed>
  readonly path: () => ConnectedPath | undefined
}

/** Each side says something at least this often, so that silence means the path is gone. */
const HeartbeatEvery = Duration.seconds(1)
/**
 * No message at all from the peer for this long, not even a heartbeat: the connection is given up
 * (libjuice's own consent checks take 13-30 s to notice a dead path here).
 */
const SilenceLimit = Duration.seconds(5)
/** A string message: the transfer protocol only uses binary ones, so it never sees these. */
const Heartbeat = "."

const HighWaterMark = 8 * 1024 * 1024
const LowWaterMark = 4 * 1024 * 1024
const Label = "p2pal"

const describe = (c: ndc.SelectedCandidateInfo) => `${c.type} ${c.address}:${c.port}`

const isRelay = (candidate: string) => / typ relay( |$)/.test(candidate)

/**
 * libdatachannel's relay policy only hides our own non-relay candidates (upstream issue #1587), and
 * a description may carry candidates too: in relay-only mode every non-relay one is dropped, both ways.
 */
const relayOnlySdp = (sdp: string) =>
  sdp
    .split("\r\n")
    .filter((line) => !line.startsWith("a=candidate:") || isRelay(line))
    .join("\r\n")

const toNdc = (server: IceServers.IceServer): ndc.IceServer =>
  server.kind === "turn"
    ? {
        hostname: server.hostname,
        port: server.port,
        username: server.username,
        password: server.password,
        relayType: "TurnUdp",
      }
    : { hostname: server.hostname, port: server.port }

/** Where a connection that never opened most likely failed, and what to do about it. */
const unreachable = (options: ConnectOptions) => {
  const within = `could not reach the peer within ${Duration.format(options.openTimeout)}`
  return options.iceServers.some((s) => s.kind === "turn")
    ? `${within}, not even through the TURN server: check that it is reachable from both sides`
    : `${within}; a firewall or NAT may block a direct connection: use a TURN server (--turn, or a signal app run with --turn-url)`
}

const connect = Effect.fn("PeerLink.connect")(function* (options: ConnectOptions) {
  const lost = yield* Deferred.make<never, PeerFailed>()
  /** Signaling only matters until the channel is open: after that the peers talk directly. */
  const signalingFailed = yield* Deferred.make<never, ConnectError>()
  const incoming = yield* Effect.acquireRelease(Mailbox.make<Uint8Array, PeerFailed>(), (m) => m.shutdown)
  const fail = (message: string) => {
    const error = new PeerFailed({ message, lost: true })
    Deferred.unsafeDone(lost, Effect.fail(error))
    incoming.unsafeDone(Exit.fail(error))
  }
  // One queue and one sending fiber keep our signals in the order libdatachannel produced them.
  const outbox = yield* Queue.unbounded<PeerSignal.PeerSignal>()
  yield* Queue.take(outbox).pipe(
    Effect.flatMap(options.signal.send),
    Effect.forever,
    Effect.catchAll((e) => Deferred.fail(signalingFailed, e)),
    Effect.forkScoped,
  )

  let relayCandidates = 0
  const pc = yield* Effect.acquireRelease(
    Effect.sync(() => {
      const pc = new ndc.PeerConnection(options.role, {
        iceServers: options.iceServers.map(toNdc),
        ...(options.relayOnly ? { iceTransportPolicy: "relay" as const } : {}),
      })
      pc.onLocalDescription((sdp, type) => {
        if (type === "offer" || type === "answer")
          Queue.unsafeOffer(outbox, {
            _tag: "description",
            type,
            sdp: options.relayOnly ? relayOnlySdp(sdp) : sdp,
          })
      })
      pc.onLocalCandidate((candidate, mid) => {
        if (!options.relayOnly || isRelay(candidate)) {
          relayCandidates += isRelay(candidate) ? 1 : 0
          Queue.unsafeOffer(outbox, { _tag: "candidate", candidate, mid })
        }
      })
      pc.onGatheringStateChange((state) => {
        // Relay-only with no relay address can never connect: say why now, not at the timeout.
        if (state === "complete" && options.relayOnly && relayCandidates === 0)
          fail(
            "the TURN server gave no relay address (--relay-only): check the TURN URL, that it is reachable, and its credentials",
          )
      })
      pc.onStateChange((state) => {
        if (state === "failed" || state === "closed" || state === "disconnected")
          fail(`the connection to the peer was lost (${state})`)
      })
      pc.onSignalingStateChange(() => {})
      pc.onIceStateChange(() => {})
      return pc
    }),
    (pc) => Effect.sync(() => pc.close()),
  )

  // Candidates wait until they are safe to use: libdatachannel refuses them before the remote
  // description, and the answerer must not start connecting before the offerer holds the answer.
  const held: Array<PeerSignal.PeerSignal & { _tag: "candidate" }> = []
  let canConnect = false
  const release = () => {
    canConnect = true
    held.splice(0).forEach((c) => pc.addRemoteCandidate(c.candidate, c.mid))
  }
  const apply = (signal: PeerSignal.PeerSignal) => {
    switch (signal._tag) {
      case "description":
        pc.setRemoteDescription(options.relayOnly ? relayOnlySdp(signal.sdp) : signal.sdp, signal.type)
        if (signal.type === "answer") {
          Queue.unsafeOffer(outbox, { _tag: "answered" })
          release()
        }
        return
      case "answered":
        return release()
      case "candidate":
        if (options.relayOnly && !isRelay(signal.candidate)) return
        return canConnect ? pc.addRemoteCandidate(signal.candidate, signal.mid) : void held.push(signal)
    }
  }
  yield* options.signal.incoming.pipe(
    Stream.runForEach((signal) =>
      Effect.try({
        try: () => apply(signal),
        catch: (e) => new PeerFailed({ message: `the peer sent an unusable connection offer: ${String(e)}` }),
      }),
    ),
    Effect.catchAll((e) => Deferred.fail(signalingFailed, e)),
    Effect.forkScoped,
  )

  const opened = yield* Deferred.make<ndc.DataChannel>()
  let lowWater: (() => void) | undefined
  /** Messages of any kind heard from the peer: the watchdog only needs to see it change. */
  let heard = 0
  // Every wrapper we hold must stay referenced until closed: node-datachannel closes collected channels.
  const channels: Array<ndc.DataChannel> = []
  const adopt = (dc: ndc.DataChannel) => {
    channels.push(dc)
    dc.setBufferedAmountLowThreshold(LowWaterMark)
    dc.onOpen(() => Deferred.unsafeDone(opened, Effect.succeed(dc)))
    dc.onClosed(() => fail("the peer closed the connection"))
    dc.onError((err) => fail(`data channel error: ${err}`))
    dc.onBufferedAmountLow(() => {
      const wake = lowWater
      lowWater = undefined
      wake?.()
    })
    dc.onMessage((msg) => {
      heard++
      if (typeof msg !== "string")
        incoming.unsafeOffer(msg instanceof ArrayBuffer ? new Uint8Array(msg) : msg)
    })
    if (dc.isOpen()) Deferred.unsafeDone(opened, Effect.succeed(dc))
  }
  yield* Effect.addFinalizer(() => Effect.sync(() => channels.forEach((dc) => dc.close())))
  if (options.role === "offerer") adopt(pc.createDataChannel(Label))
  else pc.onDataChannel(adopt)

  const dc = yield* Deferred.await(opened).pipe(
    Effect.raceFirst(Deferred.await(lost)),
    Effect.raceFirst(Deferred.await(signalingFailed)),
    Effect.timeoutFail({
      duration: options.openTimeout,
      onTimeout: () => new PeerFailed({ message: unreachable(options) }),
    }),
  )

  yield* Effect.sync(() => {
    try {
      dc.sendMessage(Heartbeat)
    } catch {
      // Closed already: the state change reports it.
    }
  }).pipe(Effect.repeat(Schedule.spaced(HeartbeatEvery)), Effect.forkScoped)
  let lastHeard = heard
  let silentSince = yield* Clock.currentTimeMillis
  yield* Effect.gen(function* () {
    const now = yield* Clock.currentTimeMillis
    if (heard !== lastHeard) {
      lastHeard = heard
      silentSince = now
    } else if (now - silentSince >= Duration.toMillis(SilenceLimit))
      fail(`nothing heard from the peer for ${Duration.format(SilenceLimit)}`)
  }).pipe(Effect.repeat(Schedule.spaced(HeartbeatEvery)), Effect.forkScoped)

  const waitForRoom = Effect.async<void>((resume) => {
    lowWater = () => resume(Effect.void)
    // The event only fires after the amount rose above the threshold; re-check in case it already drained.
    if (dc.bufferedAmount() <= LowWaterMark) {
      lowWater = undefined
      resume(Effect.void)
    }
    return Effect.sync(() => {
      lowWater = undefined
    })
  })

  const channel: Channel = {
    send: (...messages) => {
      let next = 0
      const pump: Effect.Effect<void, PeerFailed> = Effect.suspend(() => {
        if (!dc.isOpen()) return Deferred.await(lost)
        try {
          while (next < messages.length) {
            dc.sendMessageBinary(messages[next++]!)
            if (dc.bufferedAmount() > HighWaterMark)
              return waitForRoom.pipe(Effect.raceFirst(Deferred.await(lost)), Effect.zipRight(pump))
          }
        } catch (e) {
          // The channel closes on libdatachannel's thread, so it can close in the middle of a burst.
          return Effect.fail(
            new PeerFailed({
              message: `the connection to the peer was lost (${e instanceof Error ? e.message : String(e)})`,
              lost: true,
            }),
          )
        }
        return Effect.void
      })
      return pump
    },
    incoming,
    closed: Deferred.await(lost),
    path: () => {
      const pair = pc.getSelectedCandidatePair()
      if (pair === null) return undefined
      const rtt = pc.rtt()
      return {
        local: describe(pair.local),
        remote: describe(pair.remote),
        relayed: pair.local.type === "relay" || pair.remote.type === "relay",
        rttMs: rtt >= 0 ? rtt : undefined,
      }
    },
  }
  return channel
})

/** The node-datachannel runtime. `cleanup()` tears down every connection in the process, so it runs once, at exit. */
export class PeerLink extends Context.Tag("@p2pal/infra/PeerLink")<
  PeerLink,
  { readonly connect: (options: ConnectOptions) => Effect.Effect<Channel, ConnectError, Scope.Scope> }
>() {
  static readonly layer = Layer.scoped(
    PeerLink,
    Effect.acquireRelease(Effect.succeed({ connect }), () => Effect.sync(() => ndc.cleanup())),
  )
}
