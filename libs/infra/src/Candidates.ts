import type { PeerSignal } from "@p2pal/domain"

/** Which of the peer's signals reach the connection, and when: pure, so the rules are testable alone. */

export type Candidate = PeerSignal.PeerSignal & { readonly _tag: "candidate" }

export const isRelay = (candidate: string): boolean => / typ relay( |$)/.test(candidate)

/**
 * libdatachannel's relay policy only hides our own non-relay candidates (upstream issue #1587), and a
 * description may carry candidates too: in relay-only mode every non-relay one is dropped, both ways.
 */
export const relayOnlySdp = (sdp: string): string =>
  sdp
    .split("\r\n")
    .filter((line) => !line.startsWith("a=candidate:") || isRelay(line))
    .join("\r\n")

/** A candidate (ours or the peer's) that may be used at all. */
export const allowed = (candidate: string, relayOnly: boolean): boolean => !relayOnly || isRelay(candidate)

/** A description (ours or the peer's) as it may be used. */
export const filterSdp = (sdp: string, relayOnly: boolean): string => (relayOnly ? relayOnlySdp(sdp) : sdp)

/**
 * Candidates wait until they are safe to use: libdatachannel refuses them before the remote description,
 * and the answerer must not start connecting before the offerer holds the answer (its DTLS handshake
 * would reach the offerer before the answer's fingerprint does).
 */
export interface Gate {
  readonly open: boolean
  /** The peer's candidates that arrived while closed, in order. */
  readonly held: ReadonlyArray<Candidate>
}

export const closed: Gate = { open: false, held: [] }

/** What to do to the connection, in this order. */
export type Action =
  | { readonly _tag: "describe"; readonly type: "offer" | "answer"; readonly sdp: string }
  /** Tell the answerer that the answer is applied (send it `answered`). */
  | { readonly _tag: "confirm" }
  | { readonly _tag: "add"; readonly candidate: string; readonly mid: string }

const add = (c: Candidate): Action => ({ _tag: "add", candidate: c.candidate, mid: c.mid })

/** Opens the gate: everything held goes in, in the order it came. */
const release = (gate: Gate): readonly [Gate, ReadonlyArray<Action>] => [
  { open: true, held: [] },
  gate.held.map(add),
]

/**
 * One signal from the peer: the gate after it, and what to do. The offerer opens when it applies the
 * answer (and confirms it), the answerer when it hears `answered`.
 */
export const step = (
  gate: Gate,
  signal: PeerSignal.PeerSignal,
  relayOnly: boolean,
): readonly [Gate, ReadonlyArray<Action>] => {
  switch (signal._tag) {
    case "description": {
      const describe: Action = { _tag: "describe", type: signal.type, sdp: filterSdp(signal.sdp, relayOnly) }
      if (signal.type !== "answer") return [gate, [describe]]
      const [opened, added] = release(gate)
      return [opened, [describe, { _tag: "confirm" }, ...added]]
    }
    case "answered":
      return release(gate)
    case "candidate":
      if (!allowed(signal.candidate, relayOnly)) return [gate, []]
      return gate.open ? [gate, [add(signal)]] : [{ open: false, held: [...gate.held, signal] }, []]
  }
}
