import type { PeerSignal } from "@p2pal/domain"
import { PeerLink, type SignalPort } from "@p2pal/infra/PeerLink"
import { Effect, Queue, Stream } from "effect"

/** Two real node-datachannel peers in this process, signaling through in-memory queues. */
export const connectPair = Effect.gen(function* () {
  const peers = yield* PeerLink
  const toAnswerer = yield* Queue.unbounded<PeerSignal.PeerSignal>()
  const toOfferer = yield* Queue.unbounded<PeerSignal.PeerSignal>()
  const port = (
    outbox: Queue.Queue<PeerSignal.PeerSignal>,
    inbox: Queue.Queue<PeerSignal.PeerSignal>,
  ): SignalPort<never> => ({
    send: (signal) => Queue.offer(outbox, signal),
    incoming: Stream.fromQueue(inbox),
  })
  const [offerer, answerer] = yield* Effect.all(
    [
      peers.connect({
        role: "offerer",
        iceServers: [],
        relayOnly: false,
        signal: port(toAnswerer, toOfferer),
        openTimeout: "10 seconds",
      }),
      peers.connect({
        role: "answerer",
        iceServers: [],
        relayOnly: false,
        signal: port(toOfferer, toAnswerer),
        openTimeout: "10 seconds",
      }),
    ],
    { concurrency: 2 },
  )
  return { offerer, answerer }
})
