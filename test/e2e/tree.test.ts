import { randomBytes } from "node:crypto"
import { readFileSync } from "node:fs"
import * as fs from "node:fs/promises"
import * as path from "node:path"
import { describe, expect, it } from "vitest"
import {
  bin,
  type Finished,
  type Running,
  snapshot,
  start,
  tempDir,
  useSignalApp,
  waitFor,
} from "../support/Processes.js"

const signalApp = useSignalApp()

const p2pal = bin("p2pal")
const MiB = 1024 * 1024
const Files = 10_000
const Folders = 100

/** `Files` files of 1 to 4 KiB of random bytes in `Folders` folders, under `root/src/tree`; and their total size. */
const smallFiles = async (root: string) => {
  const dir = path.join(root, "src", "tree")
  let bytes = 0
  for (let folder = 0; folder < Folders; folder++) {
    const sub = path.join(dir, `d${String(folder).padStart(2, "0")}`)
    await fs.mkdir(sub, { recursive: true })
    const writes: Array<Promise<void>> = []
    for (let i = folder; i < Files; i += Folders) {
      const size = 1024 + Math.floor(Math.random() * 3 * 1024)
      bytes += size
      writes.push(fs.writeFile(path.join(sub, `f${String(i).padStart(5, "0")}.bin`), randomBytes(size)))
    }
    await Promise.all(writes)
  }
  return { dir, bytes }
}

/** The files placed under `out` (temporary files are hidden, named with a leading dot): inode and mtime each. */
const placed = async (out: string) => {
  const entries = await fs.readdir(out, { recursive: true, withFileTypes: true }).catch(() => [])
  const files = new Map<string, string>()
  for (const entry of entries) {
    if (!entry.isFile() || entry.name.startsWith(".")) continue
    const file = path.join(entry.parentPath, entry.name)
    const stat = await fs.stat(file, { bigint: true }).catch(() => undefined)
    if (stat !== undefined) files.set(path.relative(out, file), `${stat.ino} ${stat.mtimeNs}`)
  }
  return files
}

/** Bytes in a directory's files right now. */
const bytesIn = async (dir: string) => {
  let total = 0
  for (const name of await fs.readdir(dir).catch(() => []))
    total += (await fs.stat(path.join(dir, name)).catch(() => undefined))?.size ?? 0
  return total
}

/**
 * While `running` runs: the peak size of the checkpoint directory, and the bytes the process has written
 * through write calls (/proc/PID/io wchar), sampled every 50 ms.
 */
const watch = (running: Running, checkpoints: string) => {
  let peak = 0
  let written = 0
  let over = false
  void running.finished.then(() => (over = true))
  const sampling = (async () => {
    while (!over) {
      peak = Math.max(peak, await bytesIn(checkpoints))
      try {
        written = Number(/^wchar: (\d+)$/m.exec(readFileSync(`/proc/${running.child.pid}/io`, "utf8"))![1])
      } catch {
        // Exited between the check and the read: the last reading stands.
      }
      await new Promise((resolve) => setTimeout(resolve, 50))
    }
  })()
  return sampling.then(() => ({ peak, written }))
}

/** One round: its own P2PAL_HOME, so its checkpoints are the only ones there. */
const setup = async () => {
  const root = await tempDir()
  const { dir, bytes } = await smallFiles(root)
  const home = path.join(root, "home")
  const env = { P2PAL_HOME: home }
  const send = async (args: ReadonlyArray<string>) => {
    const sender = start(p2pal, ["send", "-q", ...signalApp.cliFlags(), ...args], { env })
    const [code] = await sender.line(/^[a-z]+-[a-z]+-\d+$/)
    return { code: code!, sender }
  }
  const out = path.join(root, "out")
  const recv = (code: string) =>
    start(p2pal, ["recv", "-y", ...signalApp.cliFlags(), "--out", out, code], { env })
  return { dir, bytes, out, checkpoints: path.join(home, "checkpoints"), send, recv }
}

describe("trees of many small files", () => {
  it("10,000 files of 1-4 KiB in 100 folders arrive verified, and the receiver's checkpoint stays small", async () => {
    const round = await setup()
    const { code, sender } = await round.send(["-r", round.dir])
    const receiver = round.recv(code)
    const watched = watch(receiver, round.checkpoints)
    const [received, sent] = await Promise.all([receiver.finished, sender.finished])
    expect({ receiver: received.code, sender: sent.code }, received.stderr + sent.stderr).toEqual({
      receiver: 0,
      sender: 0,
    })
    expect(await snapshot(path.join(round.out, "tree"))).toEqual(await snapshot(round.dir))
    expect(await fs.readdir(round.checkpoints).catch(() => [])).toEqual([])
    const { peak, written } = await watched
    console.log(
      `tree.test: ${Files} files (${round.bytes} bytes): receiver checkpoint at most ${peak} bytes on disk, ${written} bytes written in all`,
    )
    // The checkpoint holds the manifest and a state per file (about 250 bytes an entry), its journal at most
    // as much again, and while it is rewritten a temporary copy: a few MiB, whatever the files' sizes.
    expect(peak).toBeGreaterThan(0)
    expect(peak).toBeLessThan(12 * MiB)
    // Rewritten whole after every file, it made the receiver write about 10 GB here; saved incrementally,
    // the files themselves are most of what it writes.
    expect(written).toBeLessThan(4 * round.bytes + 32 * MiB)
  }, 120_000)

  it.each(["SIGINT", "SIGKILL"] as const)(
    "%s of the receiver in the middle of a 10,000-file tree, then resume: every file verified, none sent twice",
    async (signal) => {
      const round = await setup()
      const { code, sender } = await round.send(["-r", round.dir])
      const receiver = round.recv(code)
      const exits: Array<Finished> = []
      for (const p of [sender, receiver]) void p.finished.then((f) => exits.push(f))
      await waitFor(
        "3,000 files placed",
        async () => {
          if (exits.length > 0) throw new Error(`a process exited before the cut: ${JSON.stringify(exits)}`)
          return (await placed(round.out)).size >= 3_000 ? true : undefined
        },
        60_000,
      )
      receiver.child.kill(signal)
      const cut = await receiver.finished
      if (signal === "SIGINT") expect(cut.code, cut.stderr).toBe(130)
      // A receiver killed outright says nothing: stop the sender as a user would.
      else sender.child.kill("SIGINT")
      await sender.finished
      const before = await placed(round.out)
      expect(before.size).toBeLessThan(Files)
      const [id] = (await fs.readdir(round.checkpoints)).filter((n) => n.endsWith(".send.json"))
      expect(id).toBeDefined()

      const resumed = await round.send(["--resume", id!.replace(/\.send\.json$/, "")])
      const [received, sent] = await Promise.all([round.recv(resumed.code).finished, resumed.sender.finished])
      expect({ receiver: received.code, sender: sent.code }, received.stderr + sent.stderr).toEqual({
        receiver: 0,
        sender: 0,
      })
      expect(await snapshot(path.join(round.out, "tree"))).toEqual(await snapshot(round.dir))
      const after = await placed(round.out)
      // Every file that was in place before the cut is the same file now: not written again.
      for (const [file, identity] of before) expect(after.get(file), file).toBe(identity)
      const [, here] = received.stderr.match(/Resuming: .* already here \((\d+) of (\d+) bytes\)/) ?? []
      expect(Number(here)).toBeGreaterThan(0)
      console.log(`tree.test: receiver ${signal} with ${before.size} files in place; ${here} bytes kept`)
    },
    180_000,
  )
})
