import * as fs from "node:fs/promises"
import * as path from "node:path"
import { afterAll, afterEach, beforeEach, describe, expect, it } from "vitest"
import { addresses, canUseNetns, cannotUseNetns, useNetns } from "../support/Netns.js"
import { startRedisIn, startSignalIn } from "../support/NetnsApps.js"
import {
  bin,
  drawnLines,
  midTransfer,
  onPath,
  onTty,
  removeTempDirs,
  type Running,
  snapshot,
  sparseRandomFile,
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
/** How much a drop may cost the receiver: its checkpoint interval (and the sender's window). */
const CheckpointIntervalBytes = 16 * MiB
/** From the link coming back to the receiver's file growing again; seen here: see the annotations. */
const RecoverWithinMs = 30_000
/** Far from done once the receiver holds 8 MiB, so the restart and the outage hit a running transfer. */
const largeSize = 200 * MiB

/** The signal app in `sig`, once it listens and its store is reachable. */
const startSignal = (args: ReadonlyArray<string> = []) => startSignalIn(netns(), signalPort, args)

let signalApp: Running | undefined
beforeEach(async () => {
  if (canUseNetns) signalApp = await startSignal()
})
afterEach(async () => {
  signalApp?.child.kill("SIGTERM")
  await signalApp?.finished
})

/**
 * `p2pal send` in `snd`; quiet, its stdout carries only the join code, otherwise it says what it does
 * (reconnects included) on stderr.
 */
const startSend = async (args: ReadonlyArray<string>, quiet = true) => {
  const sender = netns().start("snd", p2pal, ["send", ...(quiet ? ["-q"] : []), ...cli, ...args])
  const [, code] = quiet
    ? await sender.line(/^([a-z]+-[a-z]+-\d+)$/)
    : await sender.line(/^Join code: ([a-z]+-[a-z]+-\d+)$/, "stderr")
  return { code: code!, sender }
}

/** `p2pal recv` in `rcv`; on a terminal (`tty`), everything it shows arrives on stdout. */
const startRecv = (
  code: string,
  out: string,
  quiet = true,
  flags: ReadonlyArray<string> = [],
  tty = false,
) => {
  const args = ["recv", "-y", ...(quiet ? ["-q"] : []), ...cli, ...flags, "--out", out, code]
  return tty ? netns().start("rcv", ...onTty(p2pal, args)) : netns().start("rcv", p2pal, args)
}

const stillRunning = (p: Running) => p.child.exitCode === null && p.child.signalCode === null

const sizeOf = async (file: string) => (await fs.stat(file)).size

/** A large file on its way from `snd` to `rcv`, returned once the receiver has bytes on disk. */
const largeTransfer = async (quiet = true, flags: ReadonlyArray<string> = [], tty = false) => {
  const root = await tempDir()
  const file = path.join(root, "src", "large.bin")
  await sparseRandomFile(file, largeSize)
  const out = path.join(root, "out")
  const { code, sender } = await startSend([...flags, file], quiet)
  const receiver = startRecv(code, out, quiet, flags, tty)
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
    }, 90_000)

    /**
     * Takes the receiver's link down for `outageMs` in the middle of a large transfer, then up; both sides
     * must finish by themselves, verified. Returns how long after the link came back the receiver's file
     * grew again, and both sides' output.
     */
    const dropReceiverLink = async (
      outageMs: number,
      transfer?: Awaited<ReturnType<typeof largeTransfer>>,
      duringOutage?: () => Promise<void>,
    ) => {
      const { src, out, part, sender, receiver } = transfer ?? (await largeTransfer(false))
      await netns().linkDown("rcv")
      try {
        // The outage is the scenario itself.
        await Promise.all([new Promise((resolve) => setTimeout(resolve, outageMs)), duringOutage?.()])
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
        RecoverWithinMs,
      )
      const recoveredMs = Date.now() - up
      const [sent, received] = await Promise.all([sender.finished, receiver.finished])
      expect({ senderExit: sent.code, receiverExit: received.code }, sent.stderr + received.stderr).toEqual({
        senderExit: 0,
        receiverExit: 0,
      })
      expect(await snapshot(out)).toEqual(await snapshot(src))
      // The sender counts what it sends a second time; the window it keeps in flight bounds it.
      const resent = Number(
        sent.stderr.match(/^Sent again after reconnecting: .* \((\d+) bytes\)/m)?.[1] ?? 0,
      )
      expect(resent, "bytes sent again after the drop").toBeLessThanOrEqual(CheckpointIntervalBytes)
      return { recoveredMs, resent, sent, received, doneMs: Date.now() - up, atUp }
    }

    /** The reconnect both sides report: the loss, the attempt on the progress line, and the way back. */
    const expectReconnected = (stderr: string) => {
      expect(stderr).toMatch(/^Connection lost \(.*\): reconnecting \(attempt 1\/3\)\.\.\.$/m)
      expect(stderr).toMatch(/^Reconnected\. Connected directly: .*; carrying on$/m)
    }

    it.for([
      // About the heartbeat's silence limit: the sides may or may not have given the connection up.
      { outageS: 5, mustReconnect: false, tty: false },
      // Far past it, and past libjuice's own timeouts: both sides saw the loss and reconnected. The
      // receiver is on a terminal: its progress bar says it is reconnecting, then carries on.
      { outageS: 30, mustReconnect: true, tty: true },
    ])(
      "finishes by itself after a $outageS s drop of the receiver's link, re-sending at most one checkpoint interval",
      { timeout: 150_000 },
      async ({ outageS, mustReconnect, tty }, { annotate }) => {
        precondition()
        const transfer = await largeTransfer(false, [], tty)
        const { recoveredMs, resent, doneMs, sent, received } = await dropReceiverLink(
          outageS * 1000,
          transfer,
        )
        if (mustReconnect) {
          expectReconnected(sent.stderr)
          expectReconnected(tty ? drawnLines(received.stdout).join("\n") : received.stderr)
        }
        if (tty) {
          const lines = drawnLines(received.stdout)
          const back = lines.findIndex((line) => line.startsWith("Reconnected."))
          expect(lines.slice(0, back), "the total bar while reconnecting").toContainEqual(
            expect.stringMatching(/^\[[= ]{20}\] +\d+%  .* reconnecting \(attempt 1\/3\)$/),
          )
          expect(lines.slice(back), "the total bar after reconnecting, with a rate again").toContainEqual(
            expect.stringMatching(/^\[[= ]{20}\] +\d+%  .*\/s  ETA /),
          )
        }
        const reconnected = /^Reconnected/m.test(sent.stderr) ? "reconnected" : "rode it out"
        await annotate(
          `${reconnected}: progress resumed ${recoveredMs} ms after the link came back (${resent} bytes sent again); done ${doneMs} ms after`,
        )
      },
    )

    it("a transfer capped with --limit-rate reconnects after a 10 s drop and keeps to its cap after it", async () => {
      precondition()
      const capMiB = 8
      const transfer = await largeTransfer(false, ["--limit-rate", `${capMiB}M`])
      const { doneMs, atUp, sent } = await dropReceiverLink(10_000, transfer)
      expectReconnected(sent.stderr)
      // What came after the link was back came at the cap, give or take the bucket's one second of burst.
      const after = largeSize - atUp
      expect(after / MiB, "MiB received after the link came back").toBeLessThanOrEqual(
        capMiB * (doneMs / 1000 + 1) * 1.05,
      )
    }, 150_000)

    it("reconnects after a later drop once a restarted signal app is back (its state in Redis)", async ({
      annotate,
    }) => {
      precondition()
      expect(onPath("redis-server"), "redis-server on the PATH").toBeDefined()
      const redis = await startRedisIn(netns(), 6390)
      try {
        const redisArgs = ["--redis", `redis://${addresses.sig}:6390`]
        signalApp!.child.kill("SIGTERM")
        await signalApp!.finished
        signalApp = await startSignal(redisArgs)
        const transfer = await largeTransfer(false)
        signalApp.child.kill("SIGKILL")
        await signalApp.finished
        // The drop begins while the app is down; it is back only after the peers have noticed the drop.
        const { recoveredMs, sent, received } = await dropReceiverLink(15_000, transfer, async () => {
          await new Promise((resolve) => setTimeout(resolve, 8_000))
          signalApp = await startSignal(redisArgs)
        })
        expectReconnected(sent.stderr)
        expectReconnected(received.stderr)
        await annotate(`progress resumed ${recoveredMs} ms after the link came back`)
      } finally {
        redis.child.kill("SIGTERM")
        await redis.finished
      }
    }, 120_000)

    it("gives up after --max-retries when the receiver's link stays down, and the resume it suggests finishes the transfer", async () => {
      precondition()
      const { src, out, sender, receiver } = await largeTransfer(false, [
        ...["--max-retries", "1", "--retry-backoff", "100ms"],
      ])
      await netns().linkDown("rcv")
      const [sent, received] = await Promise.all([sender.finished, receiver.finished])
      await netns().linkUp("rcv")
      for (const side of [sent, received]) {
        expect(side.code, side.stderr).toBe(5)
        expect(side.stderr).toMatch(/reconnecting \(attempt 1\/1\)/)
      }
      const id = sent.stderr.match(/^Resume with: p2pal send --resume (\S+)$/m)?.[1]
      expect(id, sent.stderr).toBeDefined()
      expect(sent.stderr).toMatch(/gave up after 1 attempt to reconnect/)
      expect(received.stderr).toContain(`the sender can resume with p2pal send --resume ${id}`)

      // As the messages say: the sender resumes under a new code, the receiver takes it into the same --out.
      const resumed = await startSend(["--resume", id!])
      const [again, receivedAgain] = await Promise.all([
        resumed.sender.finished,
        startRecv(resumed.code, out).finished,
      ])
      expect(
        { sender: again.code, receiver: receivedAgain.code },
        again.stderr + receivedAgain.stderr,
      ).toEqual({
        sender: 0,
        receiver: 0,
      })
      expect(await snapshot(out)).toEqual(await snapshot(src))
    }, 150_000)
  },
)
