import { SignalApi } from "@p2pal/domain"
import { once } from "node:events"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { connect, createTransfer, joinTransfer, type Signal, startSignal, within } from "./harness.js"

const { CloseCode } = SignalApi

let signal: Signal
beforeAll(async () => {
  signal = await startSignal()
})
afterAll(async () => {
  await signal.stop()
})

const signalMessage = (data: string) => ({ _tag: "signal", data })

describe("p2pal-signal WebSocket relay", () => {
  it("closes with 4401 for a missing, malformed or unknown token", async () => {
    for (const token of ["", "not a token", "A".repeat(22)]) {
      const { code, reason } = await connect(signal, token).closed()
      expect(code).toBe(CloseCode.unauthorized)
      expect(reason).not.toBe("")
    }
  })

  it("closes with 4410 once the transfer has expired", async () => {
    const created = await createTransfer(signal, 1)
    await new Promise((resolve) => setTimeout(resolve, created.expiresAt - Date.now() + 50))
    const { code } = await connect(signal, created.token).closed()
    expect(code).toBe(CloseCode.expired)
  })

  it.each([
    ["not JSON", "hello"],
    ["an unknown tag", JSON.stringify({ _tag: "offer", sdp: "x" })],
    ["a signal without data", JSON.stringify({ _tag: "signal" })],
    // Stop reasons are data: prose cannot be passed off as one.
    ["an abort whose reason is prose", JSON.stringify({ _tag: "abort", reason: "the code did not match" })],
  ])("closes with 4400 and a reason on %s", async (_, frame) => {
    const created = await createTransfer(signal)
    const client = connect(signal, created.token)
    client.send(frame)
    const { code, reason } = await client.closed()
    expect(code).toBe(CloseCode.badMessage)
    expect(reason).toMatch(/^bad message: /)
  })

  it("answers a 60 KB hostile tag with a short 4400 at once, without stalling other requests", async () => {
    const created = await createTransfer(signal)
    const client = connect(signal, created.token)
    await within(once(client.ws, "open"), "the socket to open")
    const started = performance.now()
    client.send({ _tag: "x".repeat(60 * 1024) })
    // Sent right behind the frame, so it queues behind whatever the relay does with it.
    const health = fetch(new URL("/healthz", signal.url)).then((res) => ({
      status: res.status,
      ms: performance.now() - started,
    }))
    const { code, reason } = await client.closed()
    const closedMs = performance.now() - started
    expect(code).toBe(CloseCode.badMessage)
    expect(reason).toMatch(/^bad message: /)
    expect(Buffer.byteLength(reason)).toBeLessThanOrEqual(123)
    // "At once": far below what a stall on 60 KB (a backtracking pattern, formatting it whole) would take,
    // with room for a loaded machine.
    expect(closedMs).toBeLessThan(1_000)
    const answered = await within(health, "/healthz")
    expect(answered.status).toBe(200)
    expect(answered.ms).toBeLessThan(1_000)
  })

  it("closes with 4400 on a binary frame", async () => {
    const created = await createTransfer(signal)
    const client = connect(signal, created.token)
    client.ws.once("open", () => client.ws.send(new Uint8Array([1, 2, 3])))
    expect((await client.closed()).code).toBe(CloseCode.badMessage)
  })

  it("closes with 1009 on a frame over the cap", async () => {
    const created = await createTransfer(signal)
    const client = connect(signal, created.token)
    client.send("x".repeat(SignalApi.MaxSocketMessageBytes + 1))
    expect((await client.closed()).code).toBe(CloseCode.tooBig)
  })

  // The relay handles a socket's frames in order, so the 4400 for a trailing bad frame proves that the
  // frames before it were already queued for the peer.
  const sendThenBadFrame = async (token: string, frames: ReadonlyArray<unknown>) => {
    const client = connect(signal, token)
    for (const frame of frames) client.send(frame)
    client.send("not json")
    expect((await client.closed()).code).toBe(CloseCode.badMessage)
  }

  it("keeps the sender's messages for a receiver that connects later", async () => {
    const created = await createTransfer(signal)
    await sendThenBadFrame(created.token, [signalMessage("offer"), signalMessage("ice-1")])

    const joined = await joinTransfer(signal, created.nameplate)
    const receiver = connect(signal, joined.token)
    expect(await receiver.next()).toEqual(signalMessage("offer"))
    expect(await receiver.next()).toEqual(signalMessage("ice-1"))
    expect(await receiver.next()).toEqual({ _tag: "peer-left", reason: "disconnected" })
    receiver.ws.close(1000)
  })

  it("delivers peer-joined and the receiver's messages to a sender that connects later", async () => {
    const created = await createTransfer(signal)
    const joined = await joinTransfer(signal, created.nameplate)
    await sendThenBadFrame(joined.token, [signalMessage("answer")])

    const sender = connect(signal, created.token)
    expect(await sender.next()).toEqual({ _tag: "peer-claimed" })
    expect(await sender.next()).toEqual({ _tag: "peer-joined" })
    expect(await sender.next()).toEqual(signalMessage("answer"))
    expect(await sender.next()).toEqual({ _tag: "peer-left", reason: "disconnected" })
    sender.ws.close(1000)
  })

  it("relays both ways between connected peers and reports a peer that leaves", async () => {
    const created = await createTransfer(signal)
    const sender = connect(signal, created.token)
    const joined = await joinTransfer(signal, created.nameplate)
    const receiver = connect(signal, joined.token)
    expect(await sender.next()).toEqual({ _tag: "peer-claimed" })
    expect(await sender.next()).toEqual({ _tag: "peer-joined" })

    sender.send(signalMessage("offer"))
    expect(await receiver.next()).toEqual(signalMessage("offer"))
    receiver.send(signalMessage("answer"))
    expect(await sender.next()).toEqual(signalMessage("answer"))
    for (const data of ["ice-1", "ice-2", "ice-3"]) sender.send(signalMessage(data))
    for (const data of ["ice-1", "ice-2", "ice-3"]) expect(await receiver.next()).toEqual(signalMessage(data))

    sender.ws.close(1000)
    expect(await receiver.next()).toEqual({ _tag: "peer-left", reason: "disconnected" })
    receiver.ws.close(1000)
  })

  it("tells the other side when a peer aborts, then refuses to relay", async () => {
    const created = await createTransfer(signal)
    const joined = await joinTransfer(signal, created.nameplate)
    const sender = connect(signal, created.token)
    const receiver = connect(signal, joined.token)
    expect(await sender.next()).toEqual({ _tag: "peer-claimed" })
    expect(await sender.next()).toEqual({ _tag: "peer-joined" })

    receiver.send({ _tag: "abort", reason: "stopped" })
    receiver.send(signalMessage("after abort"))
    expect(await sender.next()).toEqual({ _tag: "peer-left", reason: "stopped" })
    expect(await receiver.closed()).toEqual({ code: CloseCode.ended, reason: "transfer aborted" })
    sender.send(signalMessage("too late"))
    expect(await sender.closed()).toEqual({ code: CloseCode.ended, reason: "transfer aborted" })
  })

  it("completes an active transfer once, and refuses to relay after it", async () => {
    const created = await createTransfer(signal)
    const joined = await joinTransfer(signal, created.nameplate)
    const sender = connect(signal, created.token)
    const receiver = connect(signal, joined.token)
    expect(await sender.next()).toEqual({ _tag: "peer-claimed" })
    expect(await sender.next()).toEqual({ _tag: "peer-joined" })

    receiver.send({ _tag: "complete" })
    sender.send({ _tag: "complete" })
    sender.send(signalMessage("after the end"))
    expect(await sender.closed()).toEqual({ code: CloseCode.ended, reason: "transfer completed" })
    receiver.ws.close(1000)
  })

  it("refuses complete before the receiver is connected", async () => {
    const created = await createTransfer(signal)
    const sender = connect(signal, created.token)
    sender.send({ _tag: "complete" })
    expect((await sender.closed()).code).toBe(CloseCode.notAllowed)
  })

  it("resumes a side's socket after the last id it saw: only later messages, the receiver not announced again", async () => {
    const created = await createTransfer(signal)
    const sender = connect(signal, created.token)
    const joined = await joinTransfer(signal, created.nameplate)
    const receiver = connect(signal, joined.token)
    expect(await sender.next()).toEqual({ _tag: "peer-claimed" })
    expect(await sender.next()).toEqual({ _tag: "peer-joined" })
    receiver.send(signalMessage("answer"))
    expect(await sender.next()).toEqual(signalMessage("answer"))
    const seen = sender.lastId()!
    sender.ws.terminate()
    receiver.send(signalMessage("while away"))

    const back = connect(signal, created.token, seen)
    expect(await back.next()).toEqual(signalMessage("while away"))
    const again = connect(signal, joined.token, receiver.lastId() ?? "0")
    again.send(signalMessage("from the resumed receiver"))
    expect(await back.next()).toEqual(signalMessage("from the resumed receiver"))
    for (const client of [back, again, receiver]) client.ws.close(1000)
  })

  it("closes with 4400 on a malformed after", async () => {
    const created = await createTransfer(signal)
    const { code, reason } = await connect(signal, created.token, "12abc").closed()
    expect(code).toBe(CloseCode.badMessage)
    expect(reason).toMatch(/after/)
  })
})

describe("p2pal-signal shutdown", () => {
  it("on SIGTERM closes every socket with 1001 'going away' and exits 0 within the bound", async () => {
    const own = await startSignal()
    const created = await createTransfer(own)
    const sender = connect(own, created.token)
    const joined = await joinTransfer(own, created.nameplate)
    const receiver = connect(own, joined.token)
    expect(await sender.next()).toEqual({ _tag: "peer-claimed" })
    expect(await sender.next()).toEqual({ _tag: "peer-joined" })
    const started = performance.now()
    own.child.kill("SIGTERM")
    const closes = await Promise.all([sender.closed(), receiver.closed()])
    for (const closed of closes) expect(closed.code).toBe(CloseCode.goingAway)
    const ended = await within(own.finished, "the signal app to exit")
    expect(ended.code).toBe(0)
    expect(performance.now() - started).toBeLessThan(5_000)
  })
})
