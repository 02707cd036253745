// One end of a DataChannel allowed to use TURN relays only, for tests of the network around p2pal.
//
//   node relay-probe.mjs offer|answer '<node-datachannel IceServer as JSON>'
//
// Prints JSON lines on stdout: {"description": {type, sdp}} once ICE gathering is complete (candidates
// included; hand the line to the other end's stdin), then {"connected": <selected candidate pair>} once
// a message went each way. Exits 0 when stdin ends, 1 if not connected within 15 s.
import { createInterface } from "node:readline"
import ndc from "node-datachannel"

const [role, server] = process.argv.slice(2)
if ((role !== "offer" && role !== "answer") || server === undefined) {
  console.error("usage: relay-probe.mjs offer|answer ICE_SERVER_JSON")
  process.exit(2)
}
const print = (message) => process.stdout.write(`${JSON.stringify(message)}\n`)

const pc = new ndc.PeerConnection(role, { iceServers: [JSON.parse(server)], iceTransportPolicy: "relay" })
pc.onGatheringStateChange((state) => {
  if (state === "complete") print({ description: pc.localDescription() })
})
const deadline = setTimeout(() => {
  console.error(`relay-probe ${role}: not connected within 15 s (state ${pc.state()})`)
  process.exit(1)
}, 15_000)
const connected = () => {
  clearTimeout(deadline)
  print({ connected: pc.getSelectedCandidatePair() })
}

// Kept in a variable: a channel wrapper nothing references is collected, and that closes the channel.
let channel
if (role === "offer") {
  channel = pc.createDataChannel("probe")
  channel.onOpen(() => channel.sendMessage("ping"))
  channel.onMessage((message) => message === "pong" && connected())
} else {
  pc.onDataChannel((dc) => {
    channel = dc
    dc.onMessage((message) => {
      if (message !== "ping") return
      dc.sendMessage("pong")
      connected()
    })
  })
}

const input = createInterface({ input: process.stdin })
input.on("line", (line) => {
  const { description } = JSON.parse(line)
  pc.setRemoteDescription(description.sdp, description.type)
})
input.on("close", () => {
  channel?.close()
  pc.close()
  ndc.cleanup()
  process.exit(0)
})
