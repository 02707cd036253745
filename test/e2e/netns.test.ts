import { randomBytes } from "node:crypto"
import * as fs from "node:fs/promises"
import * as path from "node:path"
import { afterAll, afterEach, beforeEach, describe, expect, it } from "vitest"
import { addresses, canUseNetns, cannotUseNetns, useNetns } from "../support/Netns.js"
import {
  bin,
  midTransfer,
  removeTempDirs,
  type Running,
  snapshot,
  tempDir,
  waitFor,
} from "../support/Processes.js"

const netns = useNetns()
afterAll(removeTempDirs)

const p2pal = bin("p2pal")
const MiB = 1024 * 1024
/** Fixed: the signal app has its namespace to itself, and a restart must come back where the peers look. */
const signalPort = 8080
const cli = ["--server", `http://${addresses.sig}:${signalPort}`, "--stun", ""]
/** Far from done once the receiver holds 8 MiB, so the restart and the outage hit a running transfer. */
const largeSize = 200 * MiB

const startSignal = async () => {
  const app = netns().start("sig", bin("p2pal-signal"), ["--host", "0.0.0.0", "--port", String(signalPort)])
  await app.line(/^p2pal-signal listening on /)
  return app
}

let signalApp: Running | undefined
beforeEach(async () => {
  if (canUseNetns) signalApp = await startSignal()
})
afterEach(async () => {
  signalApp?.child.kill("SIGTERM")
  await signalApp?.finished
})

/**
 * A sparse file in which every 64 KiB starts with 4 KiB of random bytes: quick to make, and as a chunk
 * is at most 63 KiB, every chunk carries random bytes, so one written at the wrong offset changes the hash.
 */
const sparseRandomFile = async (file: string, size: number) => {
  await fs.mkdir(path.dirname(file), { recursive: true })
  const handle = await fs.open(file, "w")
  try {
    for (let at = 0; at < size; at += 64 * 1024) {
      const bytes = randomBytes(Math.min(4096, size - at))
      await handle.write(bytes, 0, bytes.length, at)
    }
    await handle.truncate(size)
  } finally {
    await handle.close()
  }
}

/** `p2pal send -q` in `snd`: its stdout carries only the join code. */
const startSend = async (args: ReadonlyArray<string>) => {
  const sender = netns().start("snd", p2pal, ["send", "-q", ...cli, ...args])
  const [code] = await sender.line(/^[a-z]+-[a-z]+-\d+$/)
  return { code: code!, sender }
}

const startRecv = (code: string, out: string) =>
  netns().start("rcv", p2pal, ["recv", "-y", "-q", ...cli, "--out", out, code])

const stillRunning = (p: Running) => p.child.exitCode === null && p.child.signalCode === null

const sizeOf = async (file: string) => (await fs.stat(file)).size

/** A large file on its way from `snd` to `rcv`, returned once the receiver has bytes on disk. */
const largeTransfer = async () => {
  const root = await tempDir()
  const file = path.join(root, "src", "large.bin")
  await sparseRandomFile(file, largeSize)
  const out = path.join(root, "out")
  const { code, sender } = await startSend([file])
  const receiver = startRecv(code, out)
  const part = path.join(out, await midTransfer(out, "large.bin", [sender, receiver]))
  return { src: path.dirname(file), out, part, sender, receiver }
}

describe.skipIf(!canUseNetns && process.env.CI !== "true")(
  canUseNetns
    ? "sender, receiver and signal app on separate hosts (network namespaces on one bridge)"
    : `SKIPPED: ${cannotUseNetns}`,
  () => {
    const precondition = () => expect(cannotUseNetns, "run as root with iproute2 (ip netns)").toBeUndefined()

    it("moves a directory from snd to rcv through the signal app on sig, byte for byte", async () => {
      precondition()
      const root = await tempDir()
      const tree = path.join(root, "tree")
      await sparseRandomFile(path.join(tree, "a.bin"), 24 * MiB)
      await sparseRandomFile(path.join(tree, "sub", "b.bin"), 16 * MiB + 1)
      await fs.writeFile(path.join(tree, "sub", "c.txt"), "small\n")
      const out = path.join(root, "out")

      const { code, sender } = await startSend(["-r", tree])
      const received = await startRecv(code, out).finished
      const sent = await sender.finished

      expect(received).toMatchObject({ code: 0, stdout: "", stderr: "" })
      expect(sent.code).toBe(0)
      expect(await snapshot(path.join(out, "tree"))).toEqual(await snapshot(tree))
    }, 30_000)

    it("finishes a transfer while the signal app is killed (SIGKILL) and restarted: peers are direct", async () => {
      precondition()
      const { src, out, sender, receiver } = await largeTransfer()

      signalApp!.child.kill("SIGKILL")
      expect((await signalApp!.finished).signal).toBe("SIGKILL")
      expect([sender, receiver].map(stillRunning), "the transfer ended with the signal app").toEqual([
        true,
        true,
      ])
      signalApp = await startSignal()
      const [sent, received] = await Promise.all([sender.finished, receiver.finished])

      expect({ senderExit: sent.code, receiverExit: received.code }).toEqual({
        senderExit: 0,
        receiverExit: 0,
      })
      expect(await snapshot(out)).toEqual(await snapshot(src))
    }, 45_000)

    it("rides out a 5 s drop of the receiver's link: progress resumes and the file verifies", async ({
      annotate,
    }) => {
      precondition()
      const OutageMs = 5_000
      /** Observed here: 1.2-1.3 s, the wait for the next SCTP retransmission after its backoff. */
      const ResumeWithinMs = 10_000
      const { src, out, part, sender, receiver } = await largeTransfer()

      await netns().linkDown("rcv")
      let grewWhileDown: number
      try {
        const atDown = await sizeOf(part)
        // The outage is the scenario itself.
        await new Promise((resolve) => setTimeout(resolve, OutageMs))
        grewWhileDown = (await sizeOf(part)) - atDown
        expect([sender, receiver].map(stillRunning), "a side gave up during the outage").toEqual([true, true])
      } finally {
        await netns().linkUp("rcv")
      }
      const up = Date.now()
      const atUp = await sizeOf(part)
      await waitFor(
        "the receiver's file growing again",
        async () => {
          if (!stillRunning(receiver))
            throw new Error(`the receiver exited: ${(await receiver.finished).stderr}`)
          return (await sizeOf(part)) > atUp ? true : undefined
        },
        ResumeWithinMs,
      )
      const resumedMs = Date.now() - up
      const [sent, received] = await Promise.all([sender.finished, receiver.finished])
      await annotate(
        `progress resumed ${resumedMs} ms after the link came back; done ${Date.now() - up} ms after`,
      )

      // Only what was already on its way lands while the link is down (the sender's ack window is
      // 16 MiB); a link that stayed up would have carried far more in 5 s.
      expect(grewWhileDown).toBeLessThan(32 * MiB)
      expect({ senderExit: sent.code, receiverExit: received.code }).toEqual({
        senderExit: 0,
        receiverExit: 0,
      })
      expect(await snapshot(out)).toEqual(await snapshot(src))
    }, 60_000)
  },
)
