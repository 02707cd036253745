// A hostile sender for HostileSender.test.ts: a bare node-datachannel offerer, outside the test's process
// and outside p2pal's own Sender, that sends whatever frames the test scripts and reports what comes back.
//
//   node libs/transfer/test/rogue-sender.mjs
//
// Talks to the test in JSON lines. stdin carries {script} once (the steps below) and the receiver's
// {signal}s; stdout carries this side's {signal}s (PeerSignal shapes), every {frame} the receiver sends,
// and {error} before a failed exit. Steps, in order:
//   {manifest: base64}                      the bytes as ManifestPart frames, however hostile
//   {raw: base64}                           one DataChannel message exactly as given (frames over the caps)
//   {await: tag}                            the next frame must have this tag, else the script stops
//   {chunk: {file, offset, bytes: base64}}
//   {fileEnd: {file, size, sha256: base64}}
//   {skip: {file, reason}}
import { decode, encode, HeaderBytes, MaxFrameBytes } from "@p2pal/domain/Frames"
import { frame, unframe } from "@p2pal/infra/Stripes"
import { createInterface } from "node:readline"
import { PeerConnection, cleanup } from "node-datachannel"

const emit = (message) => process.stdout.write(JSON.stringify(message) + "\n")
const bytes = (base64) => new Uint8Array(Buffer.from(base64, "base64"))

// node-datachannel closes a channel whose wrapper is collected, so both live in module scope until exit.
const pc = new PeerConnection("offerer", { iceServers: [] })
let dc

let exiting = false
function exit(code, error) {
  if (exiting) return
  exiting = true
  if (error) emit({ error })
  dc?.close()
  pc.close()
  // cleanup() tears down every connection in the process, so it runs exactly once, right before exit.
  cleanup()
  process.exit(code)
}

pc.onLocalDescription((sdp, type) => emit({ signal: { _tag: "description", type, sdp } }))
// Held until the answer is applied, so the receiver cannot start DTLS before this side knows its
// fingerprint (see bench/raw-peer.mjs); the receiver holds ours until it hears "answered".
let heldCandidates = []
pc.onLocalCandidate((candidate, mid) => {
  const signal = { _tag: "candidate", candidate, mid }
  if (heldCandidates) heldCandidates.push(signal)
  else emit({ signal })
})
// State handlers on the connection and the channel are what let the process exit after close().
pc.onStateChange((state) => {
  if (state === "failed" || state === "disconnected" || state === "closed") exit(0)
})

let script
let open = false
const arrived = []
let waiting

const nextFrame = () =>
  arrived.length > 0 ? Promise.resolve(arrived.shift()) : new Promise((resolve) => (waiting = resolve))

/** The frame as JSON: payload bytes are dropped, since only what the receiver said matters. */
const report = (frame) =>
  Object.fromEntries(Object.entries(frame).filter(([, value]) => !(value instanceof Uint8Array)))

// Every binary message carries its sequence number in front, as p2pal's lanes number them (Stripes).
let seq = 0
const sendMessage = (message) => dc.sendMessageBinary(frame(seq++, message))

async function run() {
  const send = (frame) => sendMessage(encode(frame))
  for (const step of script) {
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
    else return exit(1, `unknown step ${JSON.stringify(step)}`)
  }
}

const start = () => {
  if (open && script) run().catch((e) => exit(1, String(e)))
}

dc = pc.createDataChannel("p2pal")
dc.onOpen(() => {
  open = true
  // A live peer's heartbeat, as PeerLink sends it: without it the receiver would give the rogue up.
  setInterval(() => dc.isOpen() && dc.sendMessage("."), 1000).unref()
  start()
})
dc.onClosed(() => exit(0))
dc.onError((error) => exit(1, `data channel error: ${error}`))
dc.onMessage((message) => {
  // Text messages are PeerLink's heartbeats and the lanes' confirmations: the transfer protocol is binary.
  if (typeof message === "string") return
  for (const body of unframe(message instanceof ArrayBuffer ? new Uint8Array(message) : message).bodies) {
    const decoded = decode(body)
    if (decoded._tag === "Left") return exit(1, `the receiver sent a malformed frame: ${decoded.left.reason}`)
    emit({ frame: report(decoded.right) })
    if (waiting) {
      const resolve = waiting
      waiting = undefined
      resolve(decoded.right)
    } else arrived.push(decoded.right)
  }
})

const lines = createInterface({ input: process.stdin })
lines.on("line", (line) => {
  const message = JSON.parse(line)
  if (message.script) {
    script = message.script
    start()
  } else if (message.signal?._tag === "description") {
    pc.setRemoteDescription(message.signal.sdp, message.signal.type)
    emit({ signal: { _tag: "answered" } })
    const held = heldCandidates ?? []
    heldCandidates = undefined
    for (const signal of held) emit({ signal })
  } else if (message.signal?._tag === "candidate")
    pc.addRemoteCandidate(message.signal.candidate, message.signal.mid)
})
// The test is done with us.
lines.on("close", () => exit(0))
