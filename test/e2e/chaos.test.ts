import { randomBytes } from "node:crypto"
import * as fs from "node:fs/promises"
import * as path from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { addresses, cannotUseNetns, type Host, useNetns } from "../support/Netns.js"
import { startRedisIn, startSignalIn } from "../support/NetnsApps.js"
import {
  bin,
  type Finished,
  finishedWithin,
  onPath,
  removeTempDirs,
  type Running,
  run,
  snapshot,
  sparseRandomFile,
  stderrMatch,
  tempDir,
  untilOnDisk,
} from "../support/Processes.js"
import { prng } from "../support/Random.js"

/**
 * The chaos soak: N transfers of random trees between the `snd` and `rcv` namespaces, through a
 * Redis-backed signal app in `sig`, each hit at a random point of its bytes by one fault. Each must end
 * verified byte for byte, or with the exit codes the README documents for that fault and a resume
 * (`send --resume <id>`, a new `recv` into the same --out) that then verifies; in between, --out may
 * hold only finished files (identical to the sender's) and partial files of the tree being sent.
 * P2PAL_CHAOS_N sets N, P2PAL_CHAOS_SEED replays a run: the trees, faults and their points come from it.
 */
const netns = useNetns()

const p2pal = bin("p2pal")
const MiB = 1024 * 1024
const signalPort = 8080
const redisPort = 6390
const cli = ["--server", `http://${addresses.sig}:${signalPort}`, "--stun", ""]

/** Every kind once: about 1.5 minutes on the 2-core CI machine, inside its 25-minute budget. */
const DefaultN = 7
const n = Number(process.env.P2PAL_CHAOS_N ?? DefaultN)
const seed = Number(process.env.P2PAL_CHAOS_SEED ?? Date.now() % 2 ** 31)
if (!Number.isInteger(n) || n < 1 || !Number.isInteger(seed))
  throw new Error(`P2PAL_CHAOS_N must be a positive integer and P2PAL_CHAOS_SEED an integer`)
const replay = `P2PAL_CHAOS_SEED=${seed} P2PAL_CHAOS_N=${n} npx vitest run test/e2e/chaos.test.ts`
const random = prng(seed)
const between = (lo: number, hi: number) => lo + random() * (hi - lo)
const pick = <A>(items: ReadonlyArray<A>): A => items[Math.floor(random() * items.length)]!

const Kinds = [
  "link-down",
  "sigkill-sender",
  "sigkill-receiver",
  "sigint-sender",
  "sigint-receiver",
  "signal-restart",
  "disk-full",
] as const
type Kind = (typeof Kinds)[number]

/** Each run of seven transfers meets every kind once, in a random order: a short soak still sees them all. */
const kindsFor = (count: number): ReadonlyArray<Kind> => {
  const kinds: Array<Kind> = []
  while (kinds.length < count) {
    const block = [...Kinds]
    for (let i = block.length - 1; i > 0; i--) {
      const j = Math.floor(random() * (i + 1))
      ;[block[i], block[j]] = [block[j]!, block[i]!]
    }
    kinds.push(...block)
  }
  return kinds.slice(0, count)
}

interface FileSpec {
  readonly path: string
  readonly size: number
  /** Mostly zeros (see sparseRandomFile), so compression has something to do; otherwise random bytes. */
  readonly sparse: boolean
}

interface Plan {
  readonly index: number
  readonly files: ReadonlyArray<FileSpec>
  readonly emptyDirs: ReadonlyArray<string>
  readonly total: number
  /** The sender's --limit-rate: keeps the transfer long enough for a fault to land in it, and the CPU free. */
  readonly rate: string
  readonly kind: Kind
  /** The share of the tree's bytes on the receiver's disk when the fault strikes. */
  readonly at: number
  /** link-down: whose link, and for how long. */
  readonly side: "snd" | "rcv"
  readonly downS: number
  /** signal-restart: how long the signal app stays dead. */
  readonly signalDownS: number
}

const folders = ["", "sub", "sub/deeper", "with space", "ünïcode", "a/b/c"]
const names = ["data.bin", "notes.txt", "photo 1.jpg", "Ωmega.dat", "x", "archive.tar"]
/** Long drops take the retries to their end; with the default N they are kept short to fit its budget. */
const maxDownS = n > DefaultN ? 40 : 8

/**
 * Seconds of the transfer, at its rate cap, that come before the earliest fault point and after the
 * latest: the fault always lands in a running transfer, even when the machine is slow to strike it.
 */
const LeadS = 2.5
const MarginS = 1.25

const plans: ReadonlyArray<Plan> = kindsFor(n).map((kind, index) => {
  const rate = pick([8, 12])
  const files = Array.from({ length: 1 + Math.floor(random() * 6) }, (_, i): FileSpec => {
    const shape = pick(["tiny", "random", "random", "sparse"] as const)
    // Sparse files are kept small: compressed, they pass the cap, so they would shorten the margin.
    const size =
      shape === "tiny"
        ? Math.floor(random() * 4097)
        : Math.floor(shape === "random" ? between(2, 16) * MiB : between(0.1, 2) * MiB)
    const folder = pick(folders)
    return { path: path.posix.join(folder, `${i}-${pick(names)}`), size, sparse: shape === "sparse" }
  })
  const short = LeadS * rate * MiB - files.reduce((sum, f) => sum + f.size, 0)
  if (short > 0) files[0] = { ...files[0]!, size: files[0]!.size + short, sparse: false }
  const total = files.reduce((sum, f) => sum + f.size, 0)
  return {
    index: index + 1,
    files,
    emptyDirs: random() < 0.3 ? ["empty"] : [],
    total,
    rate: `${rate}M`,
    kind,
    at: Math.floor(between(0.1, 1 - (MarginS * rate * MiB) / total) * 100) / 100,
    side: pick(["snd", "rcv"] as const),
    downS: Math.round(between(1, maxDownS) * 10) / 10,
    signalDownS: Math.round(between(0.2, 5) * 10) / 10,
  }
})

const describePlan = (p: Plan) => {
  const fault =
    p.kind === "link-down"
      ? `${p.side}'s link down ${p.downS} s`
      : p.kind === "signal-restart"
        ? `signal app killed, back after ${p.signalDownS} s`
        : p.kind
  return `${fault} at ${p.at} of ${p.files.length} files, ${(p.total / MiB).toFixed(1)} MiB at ${p.rate}/s`
}

console.log(`chaos.test: seed ${seed}, ${n} transfers (replay: ${replay})`)

/** The tree `t` of `plan` under `src`. */
const makeTree = async (src: string, plan: Plan) => {
  for (const file of plan.files) {
    const at = path.join(src, "t", file.path)
    if (file.sparse) await sparseRandomFile(at, file.size)
    else {
      await fs.mkdir(path.dirname(at), { recursive: true })
      await fs.writeFile(at, randomBytes(file.size))
    }
  }
  for (const dir of plan.emptyDirs) await fs.mkdir(path.join(src, "t", dir), { recursive: true })
}

/** A receiver's partial file: `.<name>.<8 hex>.p2pal-part` next to its target. */
const partial = /^(.*\/)?\.(.+)\.[0-9a-f]{8}\.p2pal-part$/

/**
 * What in `out` is neither a directory of the tree, nor a finished file identical to the sender's,
 * nor a partial file of one of the tree's files no longer than it.
 */
const strays = async (src: string, out: string) => {
  const sent = await snapshot(src)
  const sizeOf = (digest: string | null | undefined) => Number(digest?.split(" ")[0] ?? -1)
  const found: Array<string> = []
  for (const [entry, digest] of await snapshot(out)) {
    if (sent.has(entry) && sent.get(entry) === digest) continue
    const m = partial.exec(entry)
    const target = m === null ? undefined : `${m[1] ?? ""}${m[2]}`
    if (target !== undefined && sizeOf(digest) <= sizeOf(sent.get(target))) continue
    found.push(`${entry} (${digest ?? "directory"})`)
  }
  return found
}

/** How a process ended: its exit code, or the signal that killed it. */
const ending = (f: Finished) => f.signal ?? f.code

/**
 * The endings the README documents for each fault, as [sender, receiver]; the fault lands well before
 * the end, so none of them is a transfer that finished first. Both exit 0 when the fault did no harm
 * (the peers reconnected, or talk directly past the signal app). A SIGKILLed side cannot say goodbye:
 * the other notices the silence and is then stopped with Ctrl+C (130), unless it gave up first (5).
 */
const documented: Readonly<Record<Kind, ReadonlyArray<readonly [Ending, Ending]>>> = {
  "link-down": [
    [0, 0],
    [5, 5],
  ],
  "sigkill-sender": [
    ["SIGKILL", 130],
    ["SIGKILL", 5],
  ],
  "sigkill-receiver": [
    [130, "SIGKILL"],
    [5, "SIGKILL"],
  ],
  // Ctrl+C tells the other side through the signal app: it stops at once, saying the peer left.
  "sigint-sender": [[130, 5]],
  "sigint-receiver": [[5, 130]],
  "signal-restart": [[0, 0]],
  // The receiver stops naming the disk (7) and tells the sender, which stops too (5).
  "disk-full": [[5, 7]],
}
type Ending = number | NodeJS.Signals

/** The figures printed at the end. */
const tally = {
  verified: 0,
  resumed: 0,
  faults: Object.fromEntries(Kinds.map((k) => [k, 0])) as Record<Kind, number>,
  /** Faults that ended the first run (so a resume finished the transfer), per kind. */
  stopped: Object.fromEntries(Kinds.map((k) => [k, 0])) as Record<Kind, number>,
}

/** Why this machine cannot run the soak, or undefined. */
const cannot =
  cannotUseNetns ?? (onPath("redis-server") === undefined ? "redis-server not found on the PATH" : undefined)

describe.skipIf(cannot !== undefined && process.env.CI !== "true")(
  cannot === undefined
    ? `chaos soak: ${n} transfers, each hit by one fault (seed ${seed})`
    : `SKIPPED: ${cannot} (the chaos soak cuts links in namespaces, mounts a tmpfs and runs Redis)`,
  () => {
    let redis: Running | undefined
    let signalApp: Running | undefined
    const startSignal = async () => {
      signalApp = await startSignalIn(netns(), signalPort, [
        "--redis",
        `redis://${addresses.sig}:${redisPort}`,
      ])
    }
    beforeAll(async () => {
      if (cannot !== undefined) return
      redis = await startRedisIn(netns(), redisPort)
      await startSignal()
    })
    afterAll(async () => {
      for (const p of [signalApp, redis]) {
        p?.child.kill("SIGTERM")
        await p?.finished
      }
      await removeTempDirs()
      console.log(
        `chaos.test: seed ${seed}: ${tally.verified}/${n} verified (${tally.resumed} after a resume); ` +
          `faults: ${Kinds.map((k) => `${k} ${tally.faults[k]} (${tally.stopped[k]} resumed)`).join(", ")}`,
      )
    })

    const iptables = (host: Host, ...args: ReadonlyArray<string>) =>
      netns().run(host, "iptables", ["-w", ...args])

    /**
     * Cuts `side` off in silence, both ways: it drops what reaches it, and the other two hosts drop
     * what comes from it. Unlike a link taken down, nothing fails at once: the sides only stop hearing.
     */
    const cut = async (side: "snd" | "rcv") => {
      const others = (["sig", "snd", "rcv"] as const).filter((h) => h !== side)
      expect((await iptables(side, "-A", "INPUT", "-i", "eth0", "-j", "DROP")).code).toBe(0)
      for (const h of others)
        expect((await iptables(h, "-A", "INPUT", "-s", addresses[side], "-j", "DROP")).code).toBe(0)
    }
    /** Removes every cut; resolves with how many packets they dropped. */
    const heal = async () => {
      let dropped = 0
      for (const h of ["sig", "snd", "rcv"] as const) {
        const listed = await iptables(h, "-L", "INPUT", "-v", "-n", "-x")
        for (const m of listed.stdout.matchAll(/^\s*(\d+)\s+\d+\s+DROP/gm)) dropped += Number(m[1])
        expect((await iptables(h, "-F", "INPUT")).code).toBe(0)
      }
      return dropped
    }

    /** Stops `survivor` as a user would once it has noticed its peer is gone, unless it ends by itself first. */
    const stopOnceLost = async (survivor: Running) => {
      const lost = stderrMatch(survivor, /^Connection lost/m).then(
        () => true,
        () => false,
      )
      if (await Promise.race([lost, survivor.finished.then(() => false)])) survivor.child.kill("SIGINT")
    }

    /** Strikes `plan`'s fault at the transfer; resolves once it is over (the link back, the app restarted). */
    const strike = async (plan: Plan, sender: Running, receiver: Running, out: string) => {
      switch (plan.kind) {
        case "link-down": {
          await cut(plan.side)
          try {
            // The outage is the fault itself.
            await new Promise((resolve) => setTimeout(resolve, plan.downS * 1000))
          } finally {
            const dropped = await heal()
            expect(dropped, "packets dropped while the link was down").toBeGreaterThan(0)
          }
          return
        }
        case "sigkill-sender":
        case "sigkill-receiver": {
          const [victim, survivor] = plan.kind === "sigkill-sender" ? [sender, receiver] : [receiver, sender]
          victim.child.kill("SIGKILL")
          await victim.finished
          return stopOnceLost(survivor)
        }
        case "sigint-sender":
          sender.child.kill("SIGINT")
          return
        case "sigint-receiver":
          receiver.child.kill("SIGINT")
          return
        case "signal-restart": {
          signalApp!.child.kill("SIGKILL")
          await signalApp!.finished
          // Down for a while: that is the fault.
          await new Promise((resolve) => setTimeout(resolve, plan.signalDownS * 1000))
          return startSignal()
        }
        case "disk-full": {
          // Everything left on the tmpfs, taken at once: the receiver's next write finds it full.
          const stats = await fs.statfs(out)
          await fs
            .writeFile(path.join(out, "filler"), Buffer.alloc(stats.bavail * stats.bsize))
            .catch((e) => {
              if ((e as NodeJS.ErrnoException).code !== "ENOSPC") throw e
            })
          return
        }
      }
    }

    /** `send` (of `args`) in `snd` and `recv` into `out` in `rcv`, each with its own P2PAL_HOME. */
    const pair = async (args: ReadonlyArray<string>, rate: string, out: string, homes: Homes) => {
      const sender = netns().start("snd", p2pal, ["send", "-y", ...cli, "--limit-rate", rate, ...args], {
        env: { P2PAL_HOME: homes.snd },
      })
      const [, code] = await sender.line(/^Join code: ([a-z]+-[a-z]+-\d+)$/, "stderr")
      const receiver = netns().start("rcv", p2pal, ["recv", "-y", ...cli, "--out", out, code!], {
        env: { P2PAL_HOME: homes.rcv },
      })
      return { sender, receiver }
    }
    interface Homes {
      readonly snd: string
      readonly rcv: string
    }
    /** Generous: a long drop plus every reconnect attempt, on a loaded machine. */
    const EndsWithinMs = 180_000
    const bothEnd = async (sender: Running, receiver: Running) => {
      const [sent, received] = await Promise.all([
        finishedWithin(sender, EndsWithinMs, "the sender"),
        finishedWithin(receiver, EndsWithinMs, "the receiver"),
      ])
      return { sent, received, log: `sender:\n${sent.stderr}\nreceiver:\n${received.stderr}` }
    }
    const checkpoints = async (home: string) =>
      (await fs.readdir(path.join(home, "checkpoints")).catch(() => [])).filter((f) => f.endsWith(".json"))

    /** Both sides exit 0, `out` holds exactly the tree, and neither side kept a checkpoint. */
    const expectVerified = async (
      ended: Awaited<ReturnType<typeof bothEnd>>,
      src: string,
      out: string,
      homes: Homes,
    ) => {
      expect([ending(ended.sent), ending(ended.received)], ended.log).toEqual([0, 0])
      expect(await snapshot(out), "what arrived").toEqual(await snapshot(src))
      expect(
        [...(await checkpoints(homes.snd)), ...(await checkpoints(homes.rcv))],
        "checkpoints left",
      ).toEqual([])
    }

    const soak = async (plan: Plan) => {
      expect(cannot, "run as root with iproute2 (ip netns), iptables and redis-server").toBeUndefined()
      const root = await tempDir()
      const src = path.join(root, "src")
      await makeTree(src, plan)
      const out = path.join(root, "out")
      await fs.mkdir(out)
      const homes = { snd: path.join(root, "home-snd"), rcv: path.join(root, "home-rcv") }
      const tmpfs = plan.kind === "disk-full"
      // Room for the tree when the receiver checks, so the disk fills up only while it writes.
      if (tmpfs)
        expect(
          await run("mount", ["-t", "tmpfs", "-o", `size=${plan.total + 16 * MiB}`, "tmpfs", out]),
        ).toMatchObject({ code: 0 })
      try {
        const { sender, receiver } = await pair(["-r", path.join(src, "t")], plan.rate, out, homes)
        await untilOnDisk(out, Math.floor(plan.at * plan.total), [sender, receiver], EndsWithinMs)
        tally.faults[plan.kind]++
        const struck = Date.now()
        await strike(plan, sender, receiver, out)
        const first = await bothEnd(sender, receiver)
        const ended = `both ended ${((Date.now() - struck) / 1000).toFixed(1)} s after the fault struck`
        if (tmpfs) await fs.rm(path.join(out, "filler"))
        const endings = [ending(first.sent), ending(first.received)]
        expect(documented[plan.kind], `the sides' endings [sender, receiver]\n${first.log}`).toContainEqual(
          endings,
        )
        if (endings.every((e) => e === 0)) {
          await expectVerified(first, src, out, homes)
          return `${/^Reconnected/m.test(first.log) ? "reconnected, " : ""}verified; ${ended}`
        }

        expect(await strays(src, out), `what the fault left in --out\n${first.log}`).toEqual([])
        tally.stopped[plan.kind]++
        // Each side that could speak printed the resume (a SIGKILLed one cannot), of the checkpoint the sender kept.
        const printed = [first.sent, first.received]
          .filter((side) => side.signal === null)
          .map((side) => side.stderr.match(/p2pal send --resume (\S+?)(?:,|$)/m)?.[1])
        const [id] = printed
        expect(id, `the resume printed\n${first.log}`).toBeDefined()
        expect(printed, `the resume printed by both\n${first.log}`).toEqual(printed.map(() => id))
        const kept = (await checkpoints(homes.snd)).filter((f) => f.endsWith(".send.json"))
        expect(kept, `the sender's checkpoint\n${first.log}`).toEqual([`${id}.send.json`])
        const again = await pair(["--resume", id!], plan.rate, out, homes)
        await expectVerified(await bothEnd(again.sender, again.receiver), src, out, homes)
        tally.resumed++
        return `stopped (sender ${endings[0]}, receiver ${endings[1]}), resumed, verified; ${ended}`
      } finally {
        if (tmpfs) await run("umount", [out])
      }
    }

    it.for(plans)(
      `transfer $index/${n} (seed ${seed}): $kind`,
      { timeout: 2 * EndsWithinMs + 60_000 },
      async (plan) => {
        try {
          const outcome = await soak(plan)
          tally.verified++
          console.log(`chaos.test: ${plan.index}/${n} ${describePlan(plan)}: ${outcome}`)
        } catch (e) {
          const error = e as Error
          error.message = `chaos seed ${seed}, transfer ${plan.index}/${n}: ${describePlan(plan)} (replay: ${replay}): ${error.message}`
          throw error
        }
      },
    )
  },
)
