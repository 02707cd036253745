import { randomBytes } from "node:crypto"
import * as fs from "node:fs/promises"
import * as path from "node:path"
import { afterAll, afterEach, beforeEach, describe, expect, it } from "vitest"
import { addresses, canUseNetns, cannotUseNetns, useNetns } from "../support/Netns.js"
import {
  bin,
  type Running,
  removeTempDirs,
  run,
  signalArgs,
  snapshot,
  tempDir,
  waitFor,
} from "../support/Processes.js"

const netns = useNetns()
afterAll(removeTempDirs)

const p2pal = bin("p2pal")
const KiB = 1024
const signalPort = 8080
const cli = ["--server", `http://${addresses.sig}:${signalPort}`, "--stun", ""]

/**
 * What reaches `rcv` is capped at 64 kbit/s by a token bucket on the bridge's port to it (the kernel
 * here has no netem): 8 KB/s, so one 63 KiB chunk alone takes 8 s, longer than the 5 s of silence a
 * fast link is allowed. 400 ms of queue, as a slow access link has.
 */
const slowLink = ["root", "tbf", "rate", "64kbit", "burst", "4kb", "latency", "400ms"]

describe.skipIf(!canUseNetns && process.env.CI !== "true")(
  canUseNetns
    ? "a transfer over a 64 kbit/s link between network namespaces (tc tbf)"
    : `SKIPPED: ${cannotUseNetns}`,
  () => {
    /** The bridge's namespace: the topology names it after the hosts' namespaces. */
    const bridge = () => netns().namespaces.sig.replace(/-sig$/, "-lan")
    const tc = async (action: "add" | "del") => {
      const done = await run("tc", [
        "-n",
        bridge(),
        "qdisc",
        action,
        "dev",
        "rcv",
        ...(action === "add" ? slowLink : ["root"]),
      ])
      expect(done.code, done.stderr).toBe(0)
    }
    const iptables = (...args: ReadonlyArray<string>) => netns().run("snd", "iptables", args)

    let signal: Running | undefined
    beforeEach(async () => {
      expect(cannotUseNetns, "run as root with iproute2 (ip netns, tc) and iptables").toBeUndefined()
      signal = netns().start(
        "sig",
        bin("p2pal-signal"),
        signalArgs(["--host", "0.0.0.0", "--port", String(signalPort)]),
      )
      await signal.line(/^p2pal-signal listening on /)
      await tc("add")
    })
    afterEach(async () => {
      await tc("del")
      await iptables("-F")
      signal?.child.kill("SIGTERM")
      await signal?.finished
    })

    /** `size` bytes from snd to rcv over the slow link; both sides say what they do on stderr. */
    const start = async (size: number) => {
      const root = await tempDir()
      const file = path.join(root, "src", "slow.bin")
      // Random throughout: zstd would shrink a sparse file to a few bytes on the wire.
      await fs.mkdir(path.dirname(file), { recursive: true })
      await fs.writeFile(file, randomBytes(size))
      const out = path.join(root, "out")
      const sender = netns().start("snd", p2pal, ["send", ...cli, file])
      const [, code] = await sender.line(/^Join code: ([a-z]+-[a-z]+-\d+)$/, "stderr")
      const receiver = netns().start("rcv", p2pal, ["recv", "-y", ...cli, "--out", out, code!])
      return { src: path.dirname(file), out, sender, receiver }
    }

    it("completes a 160 KiB file at 64 kbit/s without taking the slow link for a dead one", async () => {
      const { src, out, sender, receiver } = await start(160 * KiB)
      const [sent, received] = await Promise.all([sender.finished, receiver.finished])
      expect({ sender: sent.code, receiver: received.code }, sent.stderr + received.stderr).toEqual({
        sender: 0,
        receiver: 0,
      })
      expect(await snapshot(out)).toEqual(await snapshot(src))
      expect(sent.stderr + received.stderr).not.toMatch(/Connection lost|Not back yet/)
      // Too slow for more connections to carry their share (Stripes.verdict).
      expect(received.stderr).not.toMatch(/over \d+ connections at most/)
    }, 90_000)

    it("still sees a slow link that dies mid-transfer as lost within seconds", async () => {
      const { sender, receiver } = await start(1024 * KiB)
      // Counted, not dropped: the file is under way over the slow link once 48 KiB of it left snd.
      expect((await iptables("-A", "OUTPUT", "-p", "udp")).code).toBe(0)
      await waitFor(
        "48 KiB on the way over the slow link",
        async () => {
          const listed = await iptables("-L", "OUTPUT", "-v", "-n", "-x")
          const sent = Number(/^\s*\d+\s+(\d+)\s+(?:udp|17)\s/m.exec(listed.stdout)?.[1] ?? 0)
          return sent >= 48 * KiB ? sent : undefined
        },
        60_000,
      )
      const cut = Date.now()
      const seen: Record<string, number> = {}
      const noticed = Object.entries({ sender, receiver }).map(([side, running]) =>
        running.line(/^Connection lost /, "stderr").then(() => (seen[side] = Date.now() - cut)),
      )
      for (const chain of ["INPUT", "OUTPUT"])
        expect((await iptables("-I", chain, "1", "-p", "udp", "-j", "DROP")).code).toBe(0)
      // 5 s, two round trips (the tbf queue makes them ~0.6 s) and the 1 s the watchdog looks by; slack for load.
      const first = await Promise.race(noticed)
      console.log(`slowlink.test: Connection lost after the cut: ${JSON.stringify(seen)} ms`)
      expect(first).toBeLessThan(10_000)
      sender.child.kill("SIGKILL")
      receiver.child.kill("SIGKILL")
      await Promise.all([sender.finished, receiver.finished])
    }, 90_000)
  },
)
