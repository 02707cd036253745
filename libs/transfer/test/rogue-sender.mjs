// A hostile sender for HostileSender.test.ts: a bare node-datachannel offerer, outside the test's process
// and outside p2pal's own Sender, that sends whatever frames the test scripts and reports what comes back.
//
//   node libs/transfer/test/rogue-sender.mjs
//
// Talks to the test in JSON lines. stdin carries {script} once (the steps below) and the receiver's
// {signal}s; stdout carries this side's {signal, round}s (PeerSignal shapes, and the connection they are
// for, from 0), every {frame} the receiver sends, and {error} before a failed exit. Steps, in order:
//   {manifest: base64}                      the bytes as ManifestPart frames, however hostile
//   {raw: base64}                           one DataChannel message exactly as given (frames over the caps)
//   {await: tag}                            the next frame must have this tag, else the script stops
//   {chunk: {file, offset, bytes: base64}}
//   {fileEnd: {file, size, sha256: base64}}
//   {skip: {file, reason}}
//   {drop: true}                            closes this connection and offers a new one, the next round,
//                                           as a sender does that reconnects after a drop
import { decode, encode, HeaderBytes, MaxFrameBytes } from "@p2pal/domain/Frames"
import { frame, singles, unframe } from "@p2pal/infra/Stripes"
import { createInterface } from "node:readline"
import { PeerConnection, cleanup } from "node-datachannel"

const emit = (message) => process.stdout.write(JSON.stringify(message) + "\n")
const bytes = (base64) => new Uint8Array(Buffer.from(base64, "base64"))

// node-datachannel closes a channel whose wrapper is collected, so both live in module scope until exit.
let pc
let dc
/** The current connection; one closed on purpose ({drop}) must not end the process as a lost one does. */
let round = -1

let exiting = false
function exit(code, error) {
  if (exiting) return
  exiting = true
  if (error) emit({ error })
  dc?.close()
  pc?.close()
  // cleanup() tears down every connection in the process, so it runs exactly once, right before exit.
  cleanup()
  process.exit(code)
}

// Held until the answer is applied, so the receiver cannot start DTLS before this side knows its
// fingerprint (see bench/raw-peer.mjs); the receiver holds ours until it hears "answered".
let heldCandidates = []
let script
const arrived = []
let waiting
/** Resolves once the current round's channel is open. */
let opened

const nextFrame = () =>
  arrived.length > 0 ? Promise.resolve(arrived.shift()) : new Promise((resolve) => (waiting = resolve))

/** The frame as JSON: payload bytes are dropped, since only what the receiver said matters. */
const report = (frame) =>
  Object.fromEntries(Object.entries(frame).filter(([, value]) => !(value instanceof Uint8Array)))

// Every binary message carries its sequence number in front, as p2pal's lanes number them (Stripes);
// each connection numbers its own from 0.
let seq = 0
const sendMessage = (message) => dc.sendMessageBinary(frame(seq++, message))

/** A new connection, the next round: the test answers its signals with a new receiving connection. */
function openRound() {
  round++
  seq = 0
  arrived.length = 0
  waiting = undefined
  heldCandidates = []
  const thisRound = round
  const current = () => thisRound === round
  pc = new PeerConnection("offerer", { iceServers: [] })
  pc.onLocalDescription((sdp, type) => emit({ signal: { _tag: "description", type, sdp }, round: thisRound }))
  pc.onLocalCandidate((candidate, mid) => {
    const signal = { _tag: "candidate", candidate, mid }
    if (heldCandidates) heldCandidates.push(signal)
    else emit({ signal, round: thisRound })
  })
  // State handlers on the connection and the channel are what let the process exit after close().
  pc.onStateChange((state) => {
    if (current() && (state === "failed" || state === "disconnected" || state === "closed")) exit(0)
  })
  dc = pc.createDataChannel("p2pal")
  opened = new Promise((resolve) =>
    dc.onOpen(() => {
      // A live peer's heartbeat, as PeerLink sends it: without it the receiver would give the rogue up.
      const channel = dc
      const beat = setInterval(
        () => (channel.isOpen() ? channel.sendMessage(".") : clearInterval(beat)),
        1000,
      )
      beat.unref()
      resolve()
    }),
  )
  dc.onClosed(() => current() && exit(0))
  dc.onError((error) => current() && exit(1, `data channel error: ${error}`))
  dc.onMessage((message) => {
    // Text messages are PeerLink's heartbeats and the lanes' confirmations: the transfer protocol is binary.
    if (typeof message === "string" || !current()) return
    // The receiver's frames are small: each is one piece, alone or in a run with others.
    for (const { framed } of singles(message instanceof ArrayBuffer ? new Uint8Array(message) : message)) {
      const decoded = decode(unframe(framed).body)
      if (decoded._tag === "Left")
        return exit(1, `the receiver sent a malformed frame: ${decoded.left.reason}`)
      emit({ frame: report(decoded.right) })
      if (waiting) {
        const resolve = waiting
        waiting = undefined
        resolve(decoded.right)
      } else arrived.push(decoded.right)
    }
  })
}

async function run() {
  const send = (frame) => sendMessage(encode(frame))
  for (const step of script) {
    await opened
    if (step.manifest !== undefined) {
      const manifest = bytes(step.manifest)
      const part = MaxFrameBytes - HeaderBytes
      for (let offset = 0; offset < manifest.length; offset += part)
        send({
          _tag: "ManifestPart",
          total: manifest.length,
          offset,
          bytes: manifest.subarray(offset, offset + part),
        })
    } else if (step.raw !== undefined) sendMessage(bytes(step.raw))
    else if (step.await !== undefined) {
      if ((await nextFrame())._tag !== step.await) return
    } else if (step.chunk !== undefined)
      send({ _tag: "Chunk", ...step.chunk, bytes: bytes(step.chunk.bytes) })
    else if (step.fileEnd !== undefined)
      send({ _tag: "FileEnd", ...step.fileEnd, sha256: bytes(step.fileEnd.sha256) })
    else if (step.skip !== undefined) send({ _tag: "Skip", ...step.skip })
    else if (step.drop === true) {
      const [closing, closingChannel] = [pc, dc]
      openRound()
      closingChannel.close()
      closing.close()
    } else return exit(1, `unknown step ${JSON.stringify(step)}`)
  }
}

openRound()

const lines = createInterface({ input: process.stdin })
lines.on("line", (line) => {
  const message = JSON.parse(line)
  if (message.script) {
    script = message.script
    run().catch((e) => exit(1, String(e)))
  } else if (message.signal?._tag === "description") {
    pc.setRemoteDescription(message.signal.sdp, message.signal.type)
    emit({ signal: { _tag: "answered" }, round })
    const held = heldCandidates ?? []
    heldCandidates = undefined
    for (const signal of held) emit({ signal, round })
  } else if (message.signal?._tag === "candidate")
    pc.addRemoteCandidate(message.signal.candidate, message.signal.mid)
})
// The test is done with us.
lines.on("close", () => exit(0))
