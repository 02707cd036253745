import * as path from "node:path"
import { afterAll, describe, expect, it } from "vitest"
import { addresses, canUseNetns, cannotUseNetns, useNetns } from "../support/Netns.js"
import { bin, removeTempDirs, signalArgs, snapshot, sparseRandomFile, tempDir } from "../support/Processes.js"
import { startWanLink } from "../support/WanLink.js"

const netns = useNetns()
afterAll(removeTempDirs)

const p2pal = bin("p2pal")
const MiB = 1024 * 1024
const signalPort = 8080
const cli = ["--server", `http://${addresses.sig}:${signalPort}`, "--stun", ""]

// Its speed is the link bench's business (npm run bench -- --link); this only asks that it arrives whole.
describe.skipIf(!canUseNetns && process.env.CI !== "true")(
  canUseNetns
    ? "a transfer over a WAN-like link between network namespaces (user-space delay and loss)"
    : `SKIPPED: ${cannotUseNetns}`,
  () => {
    // Its timeout is three times the 30 s it took on a busy 2-core machine, so load alone does not fail it.
    it("completes over a 50 ms RTT, 0.5 % loss link, byte for byte", async ({ annotate }) => {
      expect(cannotUseNetns, "run as root with iproute2 (ip netns) and python3").toBeUndefined()
      const signal = netns().start(
        "sig",
        bin("p2pal-signal"),
        signalArgs(["--host", "0.0.0.0", "--port", String(signalPort)]),
      )
      const link = await startWanLink(netns(), { rttMs: 50, loss: 0.005 })
      try {
        await signal.line(/^p2pal-signal listening on /)
        const root = await tempDir()
        const file = path.join(root, "src", "wan.bin")
        // At the ~3 Mbit/s one SCTP association gets at this loss, about 8 s.
        await sparseRandomFile(file, 3 * MiB)
        const out = path.join(root, "out")

        const sender = netns().start("snd", p2pal, ["send", "-q", ...cli, file])
        const [, code] = await sender.line(/^([a-z]+-[a-z]+-\d+)$/)
        const received = await netns().start("rcv", p2pal, ["recv", "-y", ...cli, "--out", out, code!])
          .finished
        const sent = await sender.finished

        expect({ receiver: received.code, sender: sent.code }, received.stderr + sent.stderr).toEqual({
          receiver: 0,
          sender: 0,
        })
        expect(await snapshot(out)).toEqual(await snapshot(path.dirname(file)))
        // Over the link, not around it: the pair ICE chose is the link's two ends.
        const [rcv, snd] = [link.addresses.rcv, link.addresses.snd].map((a) => a.replaceAll(".", "\\."))
        expect(received.stderr).toMatch(
          new RegExp(`^Connected directly: host ${rcv}:\\d+ <-> host ${snd}:\\d+,`, "m"),
        )
      } finally {
        const forwarder = await link.stop()
        signal.child.kill("SIGTERM")
        await signal.finished
        // The forwarder's drop counts, for a run that was slow.
        await annotate(forwarder.stderr.trim())
      }
    }, 90_000)
  },
)
