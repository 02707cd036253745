import { randomBytes } from "node:crypto"
import * as fs from "node:fs/promises"
import * as path from "node:path"
import { describe, expect, it } from "vitest"
import {
  bin,
  run,
  snapshot,
  sparseRandomFile,
  start,
  tempDir,
  untilOnDisk,
  useSignalApp,
} from "../support/Processes.js"
import { prng } from "../support/Random.js"

const signalApp = useSignalApp()

const p2pal = bin("p2pal")
const MiB = 1024 * 1024
const joinCode = /^[a-z]+-[a-z]+-\d+$/

// The interruption points are random, but a failing run can be replayed with its seed.
const seed = Number(process.env.P2PAL_RESUME_SEED ?? Date.now() % 2 ** 31)
const random = prng(seed)
/**
 * Where to interrupt, as a share of the bytes: late enough that some are on disk, early enough that at
 * least 40 % of the tree (over 30 MiB) is still to come, which takes a fast machine's loopback far longer
 * than the 20 ms poll that sees the point reached.
 */
const points = (count: number) =>
  Array.from({ length: count }, () => Math.round((0.1 + 0.5 * random()) * 100) / 100)
const receiverPoints = points(10)
const senderPoints = points(3)
console.log(
  `resume.test: seed ${seed} (P2PAL_RESUME_SEED replays it); receiver SIGINT at ${receiverPoints.join(", ")}; sender SIGKILL at ${senderPoints.join(", ")} of the bytes`,
)

/** A directory of five files, 16 to 24 MiB each (see sparseRandomFile), in `root/src/d`. */
const tree = async (root: string) => {
  const src = path.join(root, "src")
  for (let i = 0; i < 5; i++)
    await sparseRandomFile(path.join(src, "d", `f${i}.bin`), 16 * MiB + Math.floor(random() * 8 * MiB))
  return src
}

/** One side's view of a round: its own P2PAL_HOME, so its checkpoints are the only ones there. */
const setup = async () => {
  const root = await tempDir()
  const src = await tree(root)
  const home = path.join(root, "home")
  const total = (
    await Promise.all((await fs.readdir(path.join(src, "d"))).map((f) => fs.stat(path.join(src, "d", f))))
  ).reduce((sum, s) => sum + s.size, 0)
  const env = { P2PAL_HOME: home }
  const common = () => [...signalApp.cliFlags()]
  const send = async (args: ReadonlyArray<string>) => {
    const sender = start(p2pal, ["send", "-q", ...common(), ...args], { env })
    const [code] = await sender.line(joinCode)
    return { code: code!, sender }
  }
  const recv = (code: string, out: string) =>
    start(p2pal, ["recv", "-y", ...common(), "--out", out, code], { env })
  const checkpoints = () => fs.readdir(path.join(home, "checkpoints")).catch(() => [])
  return { root, src, out: path.join(root, "out"), total, send, recv, checkpoints }
}

type Round = Awaited<ReturnType<typeof setup>>

/** The id of the round's interrupted transfer, from the sender's checkpoint file. */
const interruptedId = async (round: Round) => {
  const names = (await round.checkpoints()).filter((n) => n.endsWith(".send.json"))
  expect(names).toHaveLength(1)
  return names[0]!.replace(/\.send\.json$/, "")
}

/** `send --resume` and `recv` with the new code and the same --out: both succeed and every file matches. */
const resume = async (round: Round, id: string) => {
  const { code, sender } = await round.send(["--resume", id])
  const received = await round.recv(code, round.out).finished
  const sent = await sender.finished
  expect({ receiver: received.code, sender: sent.code }, received.stderr + sent.stderr).toEqual({
    receiver: 0,
    sender: 0,
  })
  expect(await snapshot(round.out)).toEqual(await snapshot(round.src))
  expect(await round.checkpoints()).toEqual([])
  return { received, sent }
}

/** What the resumed receiver said it already had. */
const alreadyHere = (stderr: string) => {
  const [, here, total] = stderr.match(/Resuming: .* already here \((\d+) of (\d+) bytes\)/) ?? []
  return { here: Number(here ?? 0), total: Number(total ?? 0) }
}

/** A fresh round: sends its directory and receives it until `share` of the bytes are on disk. */
const transferUntil = async (share: number) => {
  const round = await setup()
  const { code, sender } = await round.send(["-r", path.join(round.src, "d")])
  const receiver = round.recv(code, round.out)
  await untilOnDisk(round.out, Math.floor(share * round.total), [sender, receiver])
  return { round, sender, receiver }
}

describe("send --resume after an interruption", () => {
  it.each(receiverPoints)(
    "Ctrl+C on the receiver at %s of the bytes: resumed, every file intact, less sent again",
    async (point) => {
      const began = Date.now()
      const { round, sender, receiver } = await transferUntil(point)
      receiver.child.kill("SIGINT")
      const interrupted = await receiver.finished
      await sender.finished
      const id = await interruptedId(round)
      expect(interrupted.code).toBe(130)
      expect(interrupted.stderr).toContain(
        `Interrupted. Kept what arrived; the sender can resume with p2pal send --resume ${id}, then run p2pal recv with the new code and the same --out`,
      )
      const cut = Date.now()

      const { received } = await resume(round, id)
      const { here, total } = alreadyHere(received.stderr)
      expect(total).toBe(round.total)
      expect(here).toBeGreaterThan(0)
      expect(here).toBeLessThan(total)
      console.log(
        `resume.test: receiver SIGINT at ${point}: ${here} of ${total} bytes kept; interrupted after ${cut - began} ms, resumed in ${Date.now() - cut} ms`,
      )
    },
  )

  it.each(senderPoints)(
    "SIGKILL of the sender at %s of the bytes: resumed from the checkpoints, every file intact",
    async (point) => {
      const began = Date.now()
      const { round, sender, receiver } = await transferUntil(point)
      sender.child.kill("SIGKILL")
      await sender.finished
      // Whether it noticed the sender vanish (5) or waited to be stopped (130), it keeps what arrived.
      receiver.child.kill("SIGINT")
      expect([5, 130]).toContain((await receiver.finished).code)
      const cut = Date.now()

      const { received } = await resume(round, await interruptedId(round))
      const { here, total } = alreadyHere(received.stderr)
      expect(here).toBeGreaterThan(0)
      expect(here).toBeLessThan(total)
      console.log(
        `resume.test: sender SIGKILL at ${point}: ${here} of ${total} bytes kept; interrupted after ${cut - began} ms, resumed in ${Date.now() - cut} ms`,
      )
    },
  )

  it("SIGKILL of the receiver: resumed from its last saved checkpoint, no stray temporary file left", async () => {
    // Past two of the five files: verified and recorded before the kill.
    const { round, sender, receiver } = await transferUntil(0.6)
    receiver.child.kill("SIGKILL")
    await receiver.finished
    // It may take a while to notice a peer that vanished without a word: stop it as a user would.
    sender.child.kill("SIGINT")
    await sender.finished

    const { received } = await resume(round, await interruptedId(round))
    const { here, total } = alreadyHere(received.stderr)
    expect(here).toBeGreaterThan(0)
    expect(here).toBeLessThan(total)
  })

  it("Ctrl+C on the sender: it says how to resume, exits 130, and the resume completes", async () => {
    const { round, sender, receiver } = await transferUntil(0.4)
    sender.child.kill("SIGINT")
    const sent = await sender.finished
    await receiver.finished
    const id = await interruptedId(round)
    expect(sent.code).toBe(130)
    expect(sent.stderr).toContain(`Interrupted. Resume with: p2pal send --resume ${id}`)
    await resume(round, id)
  })

  it("a file changed on the sender's disk since the interruption comes again from the start, and verifies", async () => {
    const { round, sender, receiver } = await transferUntil(0.5)
    receiver.child.kill("SIGINT")
    await Promise.all([receiver.finished, sender.finished])
    // The file whose bytes were arriving (or, if it stopped between two files, the next one): new
    // contents from its first byte, and a new size.
    const here = await fs.readdir(path.join(round.out, "d"))
    const partial = here.find((n) => n.endsWith(".p2pal-part"))?.split(".")[1]
    const next = ["f0", "f1", "f2", "f3", "f4"].find((f) => !here.includes(`${f}.bin`))
    const changed = path.join(round.src, "d", `${partial ?? next}.bin`)
    await fs.writeFile(changed, randomBytes(5 * MiB + 3))

    const { sent } = await resume(round, await interruptedId(round))
    expect(sent.stderr).toContain(`${changed} changed since the checkpoint: sending it again from the start`)
  })
})

describe("send --resume with a checkpoint it cannot use", () => {
  it("an unknown id: exit 2, naming it", async () => {
    // P2PAL_HOME is the test file's own, which holds no such checkpoint.
    const sent = await run(p2pal, ["send", "--resume", "tr_unknown0000000000", ...signalApp.cliFlags()])
    expect({ code: sent.code, stderr: sent.stderr }).toEqual({
      code: 2,
      stderr:
        "p2pal: no checkpoint for transfer tr_unknown0000000000; `p2pal checkpoint list` shows the ones there are\n",
    })
  })

  it("a damaged checkpoint: exit 7, naming the file and how to delete it", async () => {
    const home = await tempDir()
    const id = "tr_damaged0000000000"
    const file = path.join(home, "checkpoints", `${id}.send.json`)
    await fs.mkdir(path.dirname(file))
    await fs.writeFile(file, '{"direction": "send", "vers')
    const sent = await start(p2pal, ["send", "--resume", id, ...signalApp.cliFlags()], {
      env: { P2PAL_HOME: home },
    }).finished
    expect(sent.code).toBe(7)
    expect(sent.stderr).toBe(
      `p2pal: the checkpoint file ${file} is damaged (not valid JSON): delete it with \`p2pal checkpoint delete ${id}\`\n`,
    )
  })

  it("files and --resume together: exit 2", async () => {
    const sent = await run(p2pal, [
      "send",
      "--resume",
      "tr_unknown0000000000",
      ...signalApp.cliFlags(),
      "a.txt",
    ])
    expect(sent.code).toBe(2)
    expect(sent.stderr).toContain("--resume sends the files its checkpoint names")
  })
})
