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
  start,
  stderrMatch,
  useSignalApp,
  tempDir,
} from "../support/Processes.js"

const signalApp = useSignalApp()

const p2pal = bin("p2pal")
const MiB = 1024 * 1024
const common = signalApp.cliFlags
const joinCode = /^[a-z]+-[a-z]+-\d+$/
/** What the surviving side may say when the other one vanishes mid-transfer. */
/** What the other side says when one stops: it told it so through the signal app, so no reconnecting. */
const peerStopped = /^p2pal: the peer left \(the other side stopped the transfer\)$/m
/** How long the surviving side may take to notice that its peer is gone. */
const NoticeWithinMs = 10_000

/** `p2pal send -q`, optionally run through a wrapper command (setpriv); its stdout carries only the code. */
const launchSend = (args: ReadonlyArray<string>, wrapper: ReadonlyArray<string> = []) => {
  const [command, ...rest] = [...wrapper, p2pal, "send", "-q", ...common(), ...args]
  return start(command!, rest)
}

const startSend = async (args: ReadonlyArray<string>) => {
  const sender = launchSend(args)
  const [code] = await sender.line(joinCode)
  return { code: code!, sender }
}

const startRecv = (code: string, out: string) => start(p2pal, ["recv", "-y", ...common(), "--out", out, code])

/** 256 MiB, so a loopback transfer is still running when we interrupt it; sparse, so instant to make. */
const largeFile = async (root: string) => {
  const file = path.join(root, "large.bin")
  await fs.writeFile(file, "")
  await fs.truncate(file, 256 * MiB)
  return file
}

/** Rejects if `promise` is not settled within `ms`. */
const within = <A>(ms: number, what: string, promise: Promise<A>) => {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not happen within ${ms} ms`)), ms)
  })
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer))
}

describe("nothing half-written when a transfer is interrupted", () => {
  it("Ctrl+C on the receiver: it exits 130 keeping its temporary file for a resume; the sender exits 5", async () => {
    const root = await tempDir()
    const file = await largeFile(root)
    const out = path.join(root, "out")
    const { code, sender } = await startSend([file])
    const receiver = startRecv(code, out)
    const temp = await midTransfer(out, "large.bin", [sender, receiver])

    receiver.child.kill("SIGINT")
    const received = await within(NoticeWithinMs, "the receiver exiting after SIGINT", receiver.finished)
    const sent = await within(NoticeWithinMs, "the sender noticing the receiver left", sender.finished)

    expect(temp).toMatch(/p2pal-part$/)
    expect({
      receiverExit: received.code,
      senderExit: sent.code,
      leftInOut: await fs.readdir(out),
    }).toEqual({ receiverExit: 130, senderExit: 5, leftInOut: [temp] })
    expect(received.stderr).toContain(
      "Interrupted. Kept what arrived; the sender can resume with p2pal send --resume",
    )
    expect(sent.stderr).toMatch(peerStopped)
    expect(sent.stderr).toMatch(/^Resume with: p2pal send --resume \S+$/m)
    expect(sent.stderr).not.toContain("attempt 2")
  })

  it("Ctrl+C on the sender: it exits 130 saying how to resume; the receiver exits 5 saying so, nothing placed", async () => {
    const root = await tempDir()
    const file = await largeFile(root)
    const out = path.join(root, "out")
    const { code, sender } = await startSend([file])
    const receiver = startRecv(code, out)
    const temp = await midTransfer(out, "large.bin", [sender, receiver])

    sender.child.kill("SIGINT")
    const sent = await within(NoticeWithinMs, "the sender exiting after SIGINT", sender.finished)
    const received = await within(NoticeWithinMs, "the receiver noticing the sender left", receiver.finished)

    expect({
      senderExit: sent.code,
      receiverExit: received.code,
      leftInOut: await fs.readdir(out),
    }).toEqual({ senderExit: 130, receiverExit: 5, leftInOut: [temp] })
    expect(sent.stderr).toMatch(/Interrupted\. Resume with: p2pal send --resume \S+/)
    expect(received.stderr).toMatch(peerStopped)
    expect(received.stderr).toContain("Kept what arrived; the sender can resume with p2pal send --resume")
    expect(received.stderr).not.toContain("attempt 2")
    expect(received.stderr).not.toContain("100%")
  })
})

describe("refusals before anything is written", () => {
  it.each([
    { where: "where a manifest directory would go", link: "tree" },
    { where: "inside a manifest directory", link: "tree/sub" },
  ])("refuses a symlink in --out $where (exit 7, naming it, nothing in its target)", async ({ link }) => {
    const root = await tempDir()
    const tree = path.join(root, "tree")
    await fs.mkdir(path.join(tree, "sub"), { recursive: true })
    await fs.writeFile(path.join(tree, "sub", "a.txt"), "through the link?\n")
    await fs.writeFile(path.join(tree, "b.txt"), "top\n")
    const elsewhere = path.join(root, "elsewhere")
    await fs.mkdir(elsewhere)
    const out = path.join(root, "out")
    const linkPath = path.join(out, ...link.split("/"))
    await fs.mkdir(path.dirname(linkPath), { recursive: true })
    await fs.symlink(elsewhere, linkPath)
    const before = await leftIn(out)

    const { code, sender } = await startSend(["-r", tree])
    const received = await run(p2pal, ["recv", "-y", ...common(), "--out", out, code])
    const sent = await sender.finished

    expect({ receiverExit: received.code, senderExit: sent.code }).toEqual({ receiverExit: 7, senderExit: 5 })
    expect(received.stderr).toContain(`p2pal: ${linkPath}`)
    expect(sent.stderr).toContain("declined")
    expect(await fs.readdir(elsewhere)).toEqual([])
    expect(await fs.readlink(linkPath)).toBe(elsewhere)
    expect(await leftIn(out)).toEqual(before)
  })

  it.skipIf(cannotDenyReads !== undefined && process.env.CI !== "true")(
    cannotDenyReads !== undefined
      ? `SKIPPED: ${cannotDenyReads}`
      : "refuses an unreadable source file (chmod 000): exit 7 naming it, nothing written on the receiver",
    async () => {
      expect(cannotDenyReads, "install util-linux (setpriv) to run this as root").toBeUndefined()
      const root = await tempDir()
      const secret = path.join(root, "secret.bin")
      await fs.writeFile(secret, randomBytes(100_000))
      await fs.chmod(secret, 0o000)
      await expectUnreadable(secret)
      const out = path.join(root, "out")

      const sender = launchSend([secret], permissionBound)
      // Refusing before a code is printed and failing once the receiver accepted are both fine.
      const code = await sender.line(joinCode).then(
        ([c]) => c!,
        () => undefined,
      )
      const received =
        code === undefined ? undefined : await run(p2pal, ["recv", "-y", ...common(), "--out", out, code])
      const sent = await sender.finished

      expect(sent.code).toBe(7)
      expect(sent.stderr).toContain(`p2pal: ${secret}`)
      expect(sent.stderr).toMatch(/EACCES|permission denied/i)
      if (received !== undefined) expect(received.code).not.toBe(0)
      expect(await leftIn(out)).toEqual([])
    },
  )
})

describe("a receiving disk that fills up", () => {
  /** A real full disk: a tmpfs smaller than the file, which only root can mount. */
  const canMount = process.getuid?.() === 0
  it.skipIf(!canMount && process.env.CI !== "true")(
    canMount
      ? "refuses before accepting when the files do not fit (exit 7, naming the directory), leaves nothing"
      : "SKIPPED: mounting a small tmpfs to fill up needs root",
    async () => {
      expect(canMount, "run as root: the test mounts a 4 MiB tmpfs").toBe(true)
      const root = await tempDir()
      const file = path.join(root, "big.bin")
      await fs.writeFile(file, randomBytes(16 * MiB))
      const out = path.join(root, "small")
      await fs.mkdir(out)
      const mounted = await run("mount", ["-t", "tmpfs", "-o", "size=4m", "tmpfs", out])
      expect(mounted, "could not mount a tmpfs").toMatchObject({ code: 0 })
      try {
        const { code, sender } = await startSend([file])
        const received = await run(p2pal, ["recv", "-y", ...common(), "--out", out, code])
        const sent = await sender.finished

        expect({ receiverExit: received.code, senderExit: sent.code }).toEqual({
          receiverExit: 7,
          senderExit: 5,
        })
        expect(received.stderr).toContain(`p2pal: ${out}: not enough free disk space`)
        expect(sent.stderr).toMatch(/declined|refused|not enough/)
        expect(await leftIn(out)).toEqual([])
      } finally {
        await run("umount", [out])
      }
    },
  )

  it.skipIf(!canMount && process.env.CI !== "true")(
    canMount
      ? "fills up while receiving: the receiver stops naming the disk, keeping what arrived for a resume; the sender hears it at once and does not reconnect"
      : "SKIPPED: mounting a small tmpfs to fill up needs root",
    async () => {
      expect(canMount, "run as root: the test mounts a 64 MiB tmpfs").toBe(true)
      const root = await tempDir()
      const file = path.join(root, "big.bin")
      await fs.writeFile(file, "")
      await fs.truncate(file, 32 * MiB)
      const out = path.join(root, "small")
      await fs.mkdir(out)
      const mounted = await run("mount", ["-t", "tmpfs", "-o", "size=64m", "tmpfs", out])
      expect(mounted, "could not mount a tmpfs").toMatchObject({ code: 0 })
      try {
        const { code, sender } = await startSend([file])
        // It fits when the receiver checks; something else takes the room while the user is asked.
        const receiver = start(p2pal, ["recv", ...common(), "--out", out, code], { keepStdinOpen: true })
        await stderrMatch(receiver, /Save into .*\? \[y\/N\] $/)
        await fs.writeFile(path.join(out, "filler"), Buffer.alloc(48 * MiB))
        receiver.child.stdin!.end("y\n")
        const received = await receiver.finished
        const sent = await within(NoticeWithinMs, "the sender hearing the receiver stopped", sender.finished)

        expect({ receiverExit: received.code, senderExit: sent.code }, received.stderr).toEqual({
          receiverExit: 7,
          senderExit: 5,
        })
        expect(received.stderr).toMatch(/ENOSPC|no space left|took no more bytes/i)
        expect(sent.stderr).toMatch(/^p2pal: the peer left \(the other side stopped on an error\)$/m)
        expect(sent.stderr).not.toContain("attempt 2")
        // Resumable once there is room again: the partial copy and the checkpoint stay.
        expect(received.stderr).toMatch(/Kept what arrived; the sender can resume with p2pal send --resume /)
        expect(await leftIn(out)).toEqual([
          expect.stringMatching(/^\.big\.bin\.[0-9a-f]{8}\.p2pal-part$/),
          "filler",
        ])
      } finally {
        await run("umount", [out])
      }
    },
  )
})
