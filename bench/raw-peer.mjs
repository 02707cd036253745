// One side of the RAW baseline in bench/throughput.mjs: a bare node-datachannel pair moving the same
// messages p2pal sends, with no file I/O, hashing or protocol, so it measures the stack's ceiling.
//
//   node bench/raw-peer.mjs sender BYTES
//   node bench/raw-peer.mjs receiver BYTES
//
// Talks to the parent in JSON lines: stdout carries {signal}, {ready}, {done} and {error}, and from the
// receiver {firstByte} the moment its first message arrives and {firstMiB} once it holds the first MiB (the
// parent timestamps both); stdin carries the other peer's {signal} and, for the sender, {finish} once the
// receiver has every byte.
import { createInterface } from "node:readline"
import { PeerConnection, cleanup } from "node-datachannel"

// Same framing as p2pal: a 17-byte chunk header in front of a 63 KiB payload.
const HEADER_BYTES = 17
const PAYLOAD_BYTES = 63 * 1024
// p2pal's Chunk frame type (libs/domain/src/Frames.ts).
const CHUNK_TYPE = 4
// p2pal's receiver writes (and so first shows bytes on disk) in batches of this size (WriteBatchBytes).
const FIRST_BATCH_BYTES = 1024 * 1024
// The sender tops the queue up to this many bytes and then waits for onBufferedAmountLow. SCTP holds
// roughly another 1 MiB that bufferedAmount() does not count.
const BUFFER_THRESHOLD = 4 * 1024 * 1024

const [role, bytesArg] = process.argv.slice(2)
const total = Number(bytesArg)
if ((role !== "sender" && role !== "receiver") || !Number.isSafeInteger(total) || total <= 0) {
  process.stderr.write("usage: node bench/raw-peer.mjs sender|receiver BYTES\n")
  process.exit(2)
}

const emit = (message) => process.stdout.write(JSON.stringify(message) + "\n")

// node-datachannel wrappers are collected (and close the channel on both sides) once JS drops them, so
// both live in module scope until exit.
const pc = new PeerConnection(role, { iceServers: [] })
let dc

// Set once this side's job is done (all bytes queued / all bytes received): the other side closing is then
// the normal end, not a failure.
let finished = false
let exiting = false
function exit(code, error) {
  if (exiting) return
  exiting = true
  if (error && code !== 0) emit({ error })
  dc?.close()
  pc.close()
  // cleanup() tears down every connection in the process, so it runs exactly once, right before exit.
  cleanup()
  process.exit(code)
}

pc.onLocalDescription((sdp, type) => emit({ signal: { sdp, type } }))
// The sender (offerer) holds its candidates back until it has applied the answer. Otherwise the
// receiver's connectivity checks can reach it first: ICE connects on a peer-reflexive candidate and DTLS
// starts before the receiver's fingerprint is known, so the handshake fails ("unknown CA", about 1 in 13
// loopback runs here) or the ClientHello is dropped and DTLS retries 1 s later (about 1 in 2). Holding
// them removes the failures; the 1 s retry still happens in about 1 in 7 runs.
let heldCandidates = role === "sender" ? [] : undefined
pc.onLocalCandidate((candidate, mid) => {
  if (heldCandidates) heldCandidates.push({ candidate, mid })
  else emit({ signal: { candidate, mid } })
})
// Registering state handlers on every connection and channel is what lets the process exit after close().
pc.onStateChange((state) => {
  if (state === "failed" || state === "disconnected" || state === "closed") {
    exit(finished ? 0 : 1, `peer connection ${state}`)
  }
})

function watch(channel) {
  channel.onClosed(() => exit(finished ? 0 : 1, "data channel closed early"))
  channel.onError((error) => exit(1, `data channel error: ${error}`))
}

if (role === "sender") {
  dc = pc.createDataChannel("bench")
  watch(dc)
  dc.onOpen(() => startSending(dc))
} else {
  pc.onDataChannel((channel) => {
    dc = channel
    watch(dc)
    receive(dc)
  })
}

function startSending(channel) {
  // One buffer reused for every message: sendMessageBinary copies it before returning.
  const message = Buffer.alloc(HEADER_BYTES + PAYLOAD_BYTES, 0xa5)
  let offset = 0
  channel.setBufferedAmountLowThreshold(BUFFER_THRESHOLD)
  const pump = () => {
    while (offset < total) {
      // onBufferedAmountLow fires only when the amount falls back across the threshold, so wait for it
      // only once we are above it; otherwise the event never comes.
      if (channel.bufferedAmount() > BUFFER_THRESHOLD) return
      const payload = Math.min(PAYLOAD_BYTES, total - offset)
      // Write a chunk header like p2pal's (type, file index, offset, length) so the work per message matches.
      message[0] = CHUNK_TYPE
      message.writeUInt32BE(0, 1)
      message.writeBigUInt64BE(BigInt(offset), 5)
      message.writeUInt32BE(payload, 13)
      // false only means "queued"; a closed channel shows up through onClosed/onError.
      channel.sendMessageBinary(message.subarray(0, HEADER_BYTES + payload))
      offset += payload
    }
    finished = true
  }
  channel.onBufferedAmountLow(pump)
  pump()
}

function receive(channel) {
  let received = 0
  const firstBatch = Math.min(FIRST_BATCH_BYTES, total)
  channel.onMessage((message) => {
    // Reported at once (stdout is a pipe, written synchronously on Linux); the parent takes the time.
    if (received === 0) emit({ firstByte: true })
    const before = received
    received += message.length - HEADER_BYTES
    if (before < firstBatch && received >= firstBatch) emit({ firstMiB: true })
    if (received === total) {
      finished = true
      emit({ done: { bytes: received } })
      exit(0)
    } else if (received > total) {
      exit(1, `received ${received} bytes, expected ${total}`)
    }
  })
}

const lines = createInterface({ input: process.stdin })
lines.on("line", (line) => {
  const message = JSON.parse(line)
  if (message.signal?.sdp) {
    pc.setRemoteDescription(message.signal.sdp, message.signal.type)
    const held = heldCandidates ?? []
    heldCandidates = undefined
    for (const signal of held) emit({ signal })
  } else if (message.signal?.candidate) pc.addRemoteCandidate(message.signal.candidate, message.signal.mid)
  else if (message.finish) exit(0)
})
// The parent went away: nobody is left to report to.
lines.on("close", () => exit(exiting ? 0 : 1, "stdin closed"))

emit({ ready: true })
