import type { PeerSignal } from "@p2pal/domain"
import type * as IceServers from "@p2pal/domain/IceServers"
import { PeerFailed } from "@p2pal/domain/Errors"
import { Deferred, Duration, Effect, type Mailbox, Queue, Stream } from "effect"
import * as ndc from "node-datachannel"
import * as Candidates from "./Candidates.js"
import * as Liveness from "./Liveness.js"
import * as Stripes from "./Stripes.js"

/**
 * How the two peers reach each other before the DataChannel exists (the signal app's relay). What the
 * relay may fail with (`E`) is the caller's business: it comes back out of `connect` as it went in.
 */
export interface SignalPort<E> {
  readonly send: (signal: PeerSignal.PeerSignal) => Effect.Effect<void, PeerFailed>
  readonly incoming: Stream.Stream<PeerSignal.PeerSignal, E>
}

/** Where the extra lanes of a connection signal (Stripes): the same relay, one port per lane. */
export interface LanePorts<E> {
  readonly port: (lane: number) => SignalPort<E>
  /** The lanes the offerer began to set up, each once: the answerer opens them. */
  readonly begun: Stream.Stream<number, E>
}

export interface ConnectOptions<E> {
  readonly role: "offerer" | "answerer"
  readonly iceServers: ReadonlyArray<IceServers.IceServer>
  /**
   * Only relayed (TURN) candidates, ours and the peer's: the peer never learns this machine's
   * addresses, and the connection goes through the relay or not at all.
   */
  readonly relayOnly: boolean
  readonly signal: SignalPort<E>
  /** Without them the transfer keeps to the first connection. */
  readonly lanes?: LanePorts<E>
  readonly openTimeout: Duration.DurationInput
}

export interface ConnectedPath {
  readonly local: string
  readonly remote: string
  /** Through a TURN server (either end's selected candidate is a relay). */
  readonly relayed: boolean
  readonly rttMs: number | undefined
  /** The most peer connections the transfer ran over at once (see Stripes). */
  readonly lanes: number
}

/** A reliable, ordered message channel to the peer, over one or more peer connections. */
export interface Channel {
  /**
   * Sends binary messages in order, in one synchronous burst for as long as the lanes have room, and
   * suspends only while none has. They are copied first: the caller may reuse their memory once it returns.
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

/** A string message: the transfer protocol only uses binary ones, so it never sees these. */
const Heartbeat = "."
const Label = "p2pal"
/** An extra lane is set up over the ones open: it gets as long as a reconnect attempt would. */
const LaneOpenTimeout = Duration.seconds(15)

/** SCTP's smoothed round trip, once it has one. */
const rttOf = (pc: ndc.PeerConnection) => {
  const rtt = pc.rtt()
  return rtt >= 0 ? rtt : undefined
}

const describe = (c: ndc.SelectedCandidateInfo) => `${c.type} ${c.address}:${c.port}`

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
const unreachable = (options: ConnectOptions<unknown>) => {
  const within = `could not reach the peer within ${Duration.format(options.openTimeout)}`
  return options.iceServers.some((s) => s.kind === "turn")
    ? `${within}, not even through the TURN server: check that it is reachable from both sides`
    : `${within}; a firewall or NAT may block a direct connection: use a TURN server (--turn, or a signal app run with --turn-url)`
}

/** One peer connection and its DataChannel: a lane of the stripes. */
const openLane = Effect.fn("PeerLink.openLane")(function* <E>(
  options: ConnectOptions<E>,
  heard: Stripes.Heard,
) {
  const lost = yield* Deferred.make<never, PeerFailed>()
  /** Signaling only matters until the channel is open: after that the peers talk directly. */
  const signalingFailed = yield* Deferred.make<never, PeerFailed | E>()
  const fail = (message: string) =>
    Deferred.unsafeDone(lost, Effect.fail(new PeerFailed({ message, lost: true })))
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
            sdp: Candidates.filterSdp(sdp, options.relayOnly),
          })
      })
      pc.onLocalCandidate((candidate, mid) => {
        if (!Candidates.allowed(candidate, options.relayOnly)) return
        relayCandidates += Candidates.isRelay(candidate) ? 1 : 0
        Queue.unsafeOffer(outbox, { _tag: "candidate", candidate, mid })
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

  let gate = Candidates.closed
  const perform = (action: Candidates.Action) => {
    switch (action._tag) {
      case "describe":
        return pc.setRemoteDescription(action.sdp, action.type)
      case "confirm":
        return Queue.unsafeOffer(outbox, { _tag: "answered" })
      case "add":
        return pc.addRemoteCandidate(action.candidate, action.mid)
    }
  }
  yield* options.signal.incoming.pipe(
    Stream.runForEach((signal) =>
      Effect.try({
        try: () => {
          const [next, actions] = Candidates.step(gate, signal, options.relayOnly)
          gate = next
          actions.forEach(perform)
        },
        catch: (e) => new PeerFailed({ message: `the peer sent an unusable connection offer: ${String(e)}` }),
      }),
    ),
    Effect.catchAll((e) => Deferred.fail(signalingFailed, e)),
    Effect.forkScoped,
  )

  const opened = yield* Deferred.make<ndc.DataChannel>()
  /** Messages of any kind heard from the peer: the watchdog only needs to see it change. */
  let heardCount = 0
  // Every wrapper we hold must stay referenced until closed: node-datachannel closes collected channels.
  const channels: Array<ndc.DataChannel> = []
  const adopt = (dc: ndc.DataChannel) => {
    channels.push(dc)
    dc.onOpen(() => Deferred.unsafeDone(opened, Effect.succeed(dc)))
    dc.onClosed(() => fail("the peer closed the connection"))
    dc.onError((err) => fail(`data channel error: ${err}`))
    dc.onMessage((msg) => {
      heardCount++
      if (msg !== Heartbeat) heard(msg instanceof ArrayBuffer ? new Uint8Array(msg) : msg)
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

  const beat = Effect.sync(() => {
    try {
      dc.sendMessage(Heartbeat)
    } catch {
      // Closed already: the state change reports it.
    }
  })
  yield* Effect.forkScoped(Liveness.heartbeat(beat))
  const look = (): Liveness.Look => ({ heard: heardCount, buffered: dc.bufferedAmount(), rttMs: rttOf(pc) })
  yield* Liveness.silence(look).pipe(
    Effect.andThen((quiet) =>
      fail(`nothing heard from the peer for ${Math.round(Duration.toSeconds(quiet))}s`),
    ),
    Effect.forkScoped,
  )
  // A lane given up here must be given up there too, at once: otherwise the peer, still hearing our
  // heartbeats, keeps what it sent on it waiting (Stripes resends only what a lost lane carried).
  yield* Deferred.await(lost).pipe(
    Effect.catchAll(() => Effect.sync(() => pc.close())),
    Effect.forkScoped,
  )

  const lane: Stripes.Lane & { readonly path: () => Omit<ConnectedPath, "lanes"> | undefined } = {
    dc,
    lost: Deferred.await(lost),
    path: () => {
      const pair = pc.getSelectedCandidatePair()
      if (pair === null) return undefined
      return {
        local: describe(pair.local),
        remote: describe(pair.remote),
        relayed: pair.local.type === "relay" || pair.remote.type === "relay",
        rttMs: rttOf(pc),
      }
    },
  }
  return lane
})

/**
 * A channel to the peer over one connection through the signal app, and more connections (lanes) that
 * the offerer adds while they make the transfer faster: each lane is its own SCTP association.
 */
const connect = Effect.fn("PeerLink.connect")(function* <E>(options: ConnectOptions<E>) {
  /** Every lane opened, in order: the path shown is the first one's still up. */
  const opened: Array<{ readonly path: () => Omit<ConnectedPath, "lanes"> | undefined }> = []
  const path = () =>
    opened.reduce<Omit<ConnectedPath, "lanes"> | undefined>((found, l) => found ?? l.path(), undefined)
  let lanes = 1
  const { lanes: ports } = options
  const stripes = yield* Stripes.make<E>({
    first: (heard) => Effect.tap(openLane(options, heard), (lane) => opened.push(lane)),
    more: ports && {
      begun: options.role === "offerer" ? undefined : ports.begun,
      open: (lane, heard) =>
        Effect.tap(
          openLane({ ...options, signal: ports.port(lane), openTimeout: LaneOpenTimeout }, heard),
          (opening) => opened.push(opening),
        ),
    },
    rttMs: () => path()?.rttMs,
    onLanes: (count) => (lanes = Math.max(lanes, count)),
  })
  const channel: Channel = {
    send: stripes.send,
    incoming: stripes.incoming,
    closed: stripes.closed,
    path: () => {
      const up = path()
      return up && { ...up, lanes }
    },
  }
  return channel
})

/**
 * SCTP as libdatachannel sets it up unless told otherwise acknowledges every other packet after up to
 * 20 ms: on a 50 ms path here a lone association then ran ~120 Mbit/s for a few seconds and fell to 2-10
 * for good, with no packet lost on the path; acknowledging every packet kept it up (2-4x the bytes in 25 s).
 * A 4 MiB receive window lets one lane fill a long path; the send buffer is 512 KiB (at most ~84 Mbit/s
 * per lane at 50 ms RTT, ~21 at 200 ms, so a long path takes several lanes), as what waits in it holds up
 * the other lanes (Stripes).
 */
const Sctp: ndc.SctpSettings = {
  delayedSackTime: 0,
  recvBufferSize: 4 * 1024 * 1024,
  sendBufferSize: 512 * 1024,
}

/**
 * The node-datachannel runtime. Its SCTP settings are global and must come before the first connection;
 * `cleanup()` tears down every connection in the process, so it runs once, at exit.
 */
export class PeerLink extends Effect.Service<PeerLink>()("@p2pal/infra/PeerLink", {
  scoped: Effect.acquireRelease(
    Effect.sync(() => {
      ndc.setSctpSettings(Sctp)
      return { connect }
    }),
    () => Effect.sync(() => ndc.cleanup()),
  ),
}) {}
