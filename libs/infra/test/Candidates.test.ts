import { describe, expect, it } from "@effect/vitest"
import type { PeerSignal } from "@p2pal/domain"
import * as Candidates from "@p2pal/infra/Candidates"
import { FastCheck as fc } from "effect"

const host = "candidate:1 1 UDP 2122317823 192.168.1.20 50000 typ host"
const srflx = "candidate:2 1 UDP 1686052607 203.0.113.7 50000 typ srflx raddr 192.168.1.20 rport 50000"
const relay = "candidate:3 1 UDP 8331263 198.51.100.9 49152 typ relay raddr 203.0.113.7 rport 50000"

const candidate = (c: string, mid = "0"): PeerSignal.PeerSignal => ({ _tag: "candidate", candidate: c, mid })
const sdpWith = (...lines: ReadonlyArray<string>) =>
  ["v=0", "o=- 1 1 IN IP4 0.0.0.0", "m=application 9 UDP/DTLS/SCTP webrtc-datachannel", ...lines, ""].join(
    "\r\n",
  )
const offer = (sdp = sdpWith()): PeerSignal.PeerSignal => ({ _tag: "description", type: "offer", sdp })
const answer = (sdp = sdpWith()): PeerSignal.PeerSignal => ({ _tag: "description", type: "answer", sdp })
const answered: PeerSignal.PeerSignal = { _tag: "answered" }

/** Every action for `signals`, fed in order from a closed gate. */
const run = (signals: ReadonlyArray<PeerSignal.PeerSignal>, relayOnly: boolean) => {
  let gate = Candidates.closed
  const actions: Array<Candidates.Action> = []
  for (const signal of signals) {
    const [next, done] = Candidates.step(gate, signal, relayOnly)
    gate = next
    actions.push(...done)
  }
  return { gate, actions }
}

const added = (c: string, mid = "0"): Candidates.Action => ({ _tag: "add", candidate: c, mid })

describe("isRelay", () => {
  it.each([
    [relay, true],
    [`a=${relay}`, true],
    ["candidate:3 1 UDP 8331263 198.51.100.9 49152 typ relay", true],
    [host, false],
    [srflx, false],
    ["candidate:4 1 UDP 1 10.0.0.1 1 typ relayed", false],
    ["candidate:5 1 UDP 1 10.0.0.1 1 typ prflx raddr relay", false],
  ])("%s: %s", (line, expected) => {
    expect(Candidates.isRelay(line)).toBe(expected)
  })
})

describe("relayOnlySdp", () => {
  it("drops the non-relay candidate lines and keeps every other line, in order, with CRLF", () => {
    const sdp = sdpWith(`a=${host}`, "a=mid:0", `a=${relay}`, `a=${srflx}`, "a=end-of-candidates")
    expect(Candidates.relayOnlySdp(sdp)).toBe(sdpWith("a=mid:0", `a=${relay}`, "a=end-of-candidates"))
  })

  it("leaves a description without candidates as it is", () => {
    expect(Candidates.relayOnlySdp(sdpWith("a=mid:0"))).toBe(sdpWith("a=mid:0"))
  })

  it("is used only in relay-only mode", () => {
    const sdp = sdpWith(`a=${host}`)
    expect(Candidates.filterSdp(sdp, false)).toBe(sdp)
    expect(Candidates.filterSdp(sdp, true)).toBe(sdpWith())
  })
})

describe("the candidate gate", () => {
  it("the offerer holds the peer's candidates until it applies the answer, confirms it, then adds them in order", () => {
    const { actions, gate } = run([candidate(host, "0"), candidate(srflx, "1"), answer()], false)
    expect(actions).toEqual([
      { _tag: "describe", type: "answer", sdp: sdpWith() },
      { _tag: "confirm" },
      added(host, "0"),
      added(srflx, "1"),
    ])
    expect(gate).toEqual({ open: true, held: [] })
  })

  it("the answerer applies the offer at once but holds candidates until the offerer says it holds the answer", () => {
    const before = run([offer(), candidate(host)], false)
    expect(before.actions).toEqual([{ _tag: "describe", type: "offer", sdp: sdpWith() }])
    expect(before.gate.open).toBe(false)
    const after = run([offer(), candidate(host), answered, candidate(relay)], false)
    expect(after.actions.slice(1)).toEqual([added(host), added(relay)])
  })

  it("an open gate passes candidates straight through, and a second opening adds nothing twice", () => {
    expect(run([answered, candidate(host), answered], false).actions).toEqual([added(host)])
  })

  it("in relay-only mode drops the peer's non-relay candidates instead of holding them", () => {
    const { actions } = run(
      [candidate(host), candidate(relay), candidate(srflx), answered, candidate(host)],
      true,
    )
    expect(actions).toEqual([added(relay)])
  })

  it("in relay-only mode strips non-relay candidates from the peer's description", () => {
    const { actions } = run([answer(sdpWith(`a=${host}`, `a=${relay}`))], true)
    expect(actions[0]).toEqual({ _tag: "describe", type: "answer", sdp: sdpWith(`a=${relay}`) })
  })

  const line = fc.constantFrom(host, srflx, relay)
  const signal: fc.Arbitrary<PeerSignal.PeerSignal> = fc.oneof(
    fc.record({ line, mid: fc.constantFrom("0", "1") }).map(({ line, mid }) => candidate(line, mid)),
    fc.array(line, { maxLength: 3 }).map((lines) => offer(sdpWith(...lines.map((l) => `a=${l}`)))),
    fc.array(line, { maxLength: 3 }).map((lines) => answer(sdpWith(...lines.map((l) => `a=${l}`)))),
    fc.constant(answered),
  )
  const signals = fc.array(signal, { maxLength: 30 })

  it.prop(
    "adds exactly the allowed candidates, in arrival order, and none before the gate opens",
    [signals, fc.boolean()],
    ([signals, relayOnly]) => {
      const opensAt = signals.findIndex(
        (s) => s._tag === "answered" || (s._tag === "description" && s.type === "answer"),
      )
      const { actions } = run(signals, relayOnly)
      const allowed = signals.flatMap((s) =>
        s._tag === "candidate" && Candidates.allowed(s.candidate, relayOnly)
          ? [added(s.candidate, s.mid)]
          : [],
      )
      expect(actions.filter((a) => a._tag === "add")).toEqual(opensAt === -1 ? [] : allowed)
      const beforeOpening = run(opensAt === -1 ? signals : signals.slice(0, opensAt), relayOnly).actions
      expect(beforeOpening.filter((a) => a._tag === "add")).toEqual([])
    },
  )

  it.prop(
    "in relay-only mode nothing that reaches the connection names a non-relay candidate",
    [signals],
    ([signals]) => {
      for (const action of run(signals, true).actions) {
        if (action._tag === "add") expect(Candidates.isRelay(action.candidate)).toBe(true)
        if (action._tag === "describe")
          for (const l of action.sdp.split("\r\n").filter((l) => l.startsWith("a=candidate:")))
            expect(Candidates.isRelay(l)).toBe(true)
      }
    },
  )

  it.prop(
    "confirms each answer right after applying it, and nothing else",
    [signals, fc.boolean()],
    ([signals, relayOnly]) => {
      const { actions } = run(signals, relayOnly)
      const answers = signals.filter((s) => s._tag === "description" && s.type === "answer").length
      expect(actions.filter((a) => a._tag === "confirm")).toHaveLength(answers)
      actions.forEach((a, i) => {
        if (a._tag === "confirm") expect(actions[i - 1]).toMatchObject({ _tag: "describe", type: "answer" })
      })
    },
  )
})
