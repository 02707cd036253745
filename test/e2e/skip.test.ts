import { randomBytes } from "node:crypto"
import * as fs from "node:fs/promises"
import * as path from "node:path"
import { describe, expect, it } from "vitest"
import { cannotDenyReads, expectUnreadable, permissionBound } from "../support/Permissions.js"
import {
  bin,
  leftIn,
  midTransfer,
  run,
  snapshot,
  start,
  tempDir,
  useSignalApp,
} from "../support/Processes.js"

const signalApp = useSignalApp()

const p2pal = bin("p2pal")
const common = signalApp.cliFlags
const joinCode = /^[a-z]+-[a-z]+-\d+$/

/** `p2pal send -q -r`, behind `wrapper` if given: its stdout carries only the join code. */
const launchSend = (args: ReadonlyArray<string>, wrapper: ReadonlyArray<string> = []) => {
  const [command, ...rest] = [...wrapper, p2pal, "send", "-q", "-r", ...common(), ...args]
  return start(command!, rest)
}

/** A directory `tree` with a.txt, `middle` (made by the test) and c.txt: the middle one is the problem. */
const makeTree = async (middle: string) => {
  const root = await tempDir()
  const tree = path.join(root, "tree")
  await fs.mkdir(tree)
  await fs.writeFile(path.join(tree, "a.txt"), randomBytes(200_000))
  await fs.writeFile(path.join(tree, "c.txt"), randomBytes(300_000))
  return { root, tree, middle: path.join(tree, middle), out: path.join(root, "out") }
}

/** The tree as it should arrive without `middle`: what is left of it once that is gone. */
const withoutMiddle = async (tree: string, middle: string) => {
  await fs.rm(middle, { force: true })
  return snapshot(tree)
}

describe("send --skip-errors", () => {
  it.skipIf(cannotDenyReads !== undefined && process.env.CI !== "true")(
    cannotDenyReads !== undefined
      ? `SKIPPED: ${cannotDenyReads}`
      : "an unreadable file in the middle of a directory: aborts naming it, or with the flag is left out (exit 10)",
    async () => {
      expect(cannotDenyReads, "install util-linux (setpriv) to run this as root").toBeUndefined()
      const { tree, middle: secret, out } = await makeTree("b-secret.bin")
      await fs.writeFile(secret, randomBytes(100_000))
      await fs.chmod(secret, 0o000)
      await expectUnreadable(secret)
      const reason = "permission denied (EACCES)"

      // Without the flag: refused before a code is handed out, so nobody can receive anything.
      const refused = await launchSend([tree], permissionBound).finished
      expect(refused).toMatchObject({
        code: 7,
        stdout: "",
        stderr: `p2pal: ${secret}: ${reason}; nothing was sent (--skip-errors sends the rest without it)\n`,
      })

      const sender = launchSend(["--skip-errors", tree], permissionBound)
      const [code] = await sender.line(joinCode)
      const received = await run(p2pal, ["recv", "-y", ...common(), "--out", out, code!])
      const sent = await sender.finished

      expect({ sent: sent.code, received: received.code }).toEqual({ sent: 10, received: 0 })
      // -q keeps the skipped file, when found and in the summary, on stderr; stdout is only the code.
      expect(sent).toMatchObject({
        stdout: `${code}\n`,
        stderr:
          `skipped ${secret}: ${reason}\n` +
          "p2pal: completed, but 1 file could not be read and was skipped:\n" +
          `  ${secret}: ${reason}\n`,
      })
      // The receiver was never offered it: its list, and what it saved, are the other two files.
      expect(received.stderr).toContain("Receiving 2 files (500.0 kB):\n  tree/\n  tree/a.txt  200.0 kB\n")
      expect(received.stderr).not.toContain("b-secret.bin")
      expect(await snapshot(path.join(out, "tree"))).toEqual(await withoutMiddle(tree, secret))
    },
  )

  /** 256 MiB, so a loopback transfer is still running when the test changes it; sparse, so instant to make. */
  const largeFile = async (file: string) => {
    await fs.writeFile(file, "")
    await fs.truncate(file, 256 * 1024 * 1024)
  }

  it("a file that shrinks while being sent: with the flag both sides skip it (exit 10/10), nothing of it is left", async () => {
    const { tree, middle: big, out } = await makeTree("big.bin")
    await largeFile(big)
    const reason = "it changed while being sent"

    const sender = launchSend(["--skip-errors", tree])
    const [code] = await sender.line(joinCode)
    const receiver = start(p2pal, ["recv", "-y", "-q", ...common(), "--out", out, code!])
    await midTransfer(path.join(out, "tree"), "big.bin", [sender, receiver])
    await fs.truncate(big, 0)
    const [sent, received] = await Promise.all([sender.finished, receiver.finished])

    expect({ sent: sent.code, received: received.code }).toEqual({ sent: 10, received: 10 })
    expect(sent.stderr).toBe(
      `skipped ${big}: ${reason}\n` +
        "p2pal: completed, but 1 file could not be read and was skipped:\n" +
        `  ${big}: ${reason}\n`,
    )
    expect(received).toMatchObject({
      stdout: "",
      stderr:
        `skipped tree/big.bin: ${reason}\n` +
        "p2pal: completed, but the sender skipped 1 file; it was not saved:\n" +
        `  tree/big.bin: ${reason}\n`,
    })
    // The files around it arrived whole; of it, not even a temporary file is left.
    expect(await leftIn(out)).toEqual(["tree/", "tree/a.txt", "tree/c.txt"])
    expect(await snapshot(path.join(out, "tree"))).toEqual(await withoutMiddle(tree, big))
  })

  it("a file that grows while being sent: without the flag both sides stop naming it, nothing half-written", async () => {
    const { tree, middle: big, out } = await makeTree("big.bin")
    await largeFile(big)
    const reason = "it changed while being sent"

    const sender = launchSend([tree])
    const [code] = await sender.line(joinCode)
    const receiver = start(p2pal, ["recv", "-y", "-q", ...common(), "--out", out, code!])
    await midTransfer(path.join(out, "tree"), "big.bin", [sender, receiver])
    // Every declared byte still reads, so only the check after the last read can catch this.
    await fs.appendFile(big, "one more line\n")
    const [sent, received] = await Promise.all([sender.finished, receiver.finished])

    expect(sent).toMatchObject({
      code: 7,
      stderr: `p2pal: ${big}: ${reason}; the transfer was stopped (--skip-errors would send the other files without it)\n`,
    })
    expect(received).toMatchObject({
      code: 5,
      stderr: `p2pal: the sender stopped: could not send tree/big.bin: ${reason}\n`,
    })
    // a.txt was verified before the problem and stays; of big.bin not even a temporary file is left.
    expect(await leftIn(out)).toEqual(["tree/", "tree/a.txt"])
  })
})
