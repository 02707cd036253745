import { spawn } from "node:child_process"
import { randomBytes } from "node:crypto"
import { createReadStream, createWriteStream, readFileSync } from "node:fs"
import * as fs from "node:fs/promises"
import * as path from "node:path"
import { pipeline } from "node:stream/promises"
import { describe, expect, it } from "vitest"
import { bin, finishedWithin, run, start, tempDir, useSignalApp, waitFor } from "../support/Processes.js"

const signalApp = useSignalApp()
const p2pal = bin("p2pal")
const MiB = 1024 * 1024

/**
 * `p2pal send -q ...`: its stdout carries only the join code. With `stdin`, that file flows into its
 * stdin as fast as it reads: `fed()` tells how much of it has left the file so far, at most a pipe's
 * and a stream's buffers (some 100 KiB) ahead of what the sender took.
 */
const startSend = async (args: ReadonlyArray<string>, stdin?: string) => {
  const sender = start(p2pal, ["send", "-q", ...signalApp.cliFlags(), ...args], {
    keepStdinOpen: stdin !== undefined,
  })
  const feed = stdin === undefined ? undefined : createReadStream(stdin)
  if (feed !== undefined) void pipeline(feed, sender.child.stdin!)
  const [code] = await sender.line(/^[a-z]+-[a-z]+-\d+$/)
  return { ...sender, code: code!, fed: () => feed?.bytesRead ?? 0 }
}

/** `p2pal recv -y --out - CODE` with its stdout, bytes as they come, into `file`; how it ended. */
const recvToFile = (code: string, file: string) =>
  new Promise<{ code: number | null; stderr: string }>((resolve) => {
    const child = spawn(p2pal, ["recv", "-y", ...signalApp.cliFlags(), "--out", "-", code], {
      stdio: ["ignore", "pipe", "pipe"],
    })
    let stderr = ""
    child.stderr.setEncoding("utf8").on("data", (d: string) => (stderr += d))
    const written = pipeline(child.stdout, createWriteStream(file))
    child.on("close", (exit) => void written.then(() => resolve({ code: exit, stderr })))
  })

/** `cmp`, the real one: exit 0 when the two files are byte for byte the same. */
const cmp = (a: string, b: string) => run("cmp", [a, b]).then((r) => r.code)

/**
 * The highest resident memory of a process until it exits, in MiB: /proc/PID/status VmHWM, read every
 * 100 ms (the last reading before exit holds the peak).
 */
const peakMiB = async (pid: number, finished: Promise<unknown>) => {
  let peak = 0
  let over = false
  void finished.then(() => (over = true))
  while (!over) {
    try {
      peak = Number(/^VmHWM:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"))![1]) / 1024
    } catch {
      // Exited between the check and the read: the last reading stands.
    }
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
  return peak
}

describe("send --text", () => {
  const Text = "hello\u001b[31m red\u0007 world\ttab\nsecond line\n"

  it("prints the text on a piped stdout byte for byte, and writes nothing to disk", async () => {
    const root = await tempDir()
    const out = path.join(root, "out")
    const sender = await startSend(["--text", Text])
    const received = await run(p2pal, ["recv", "-y", ...signalApp.cliFlags(), "--out", out, sender.code])
    const sent = await sender.finished
    expect({ received: received.code, sent: sent.code }).toEqual({ received: 0, sent: 0 })
    expect(received.stdout).toBe(Text)
    expect(received.stderr).toContain("SHA-256 verified")
    expect(await fs.readdir(root)).toEqual([])
  })

  it("escapes control characters when stdout is a terminal", async () => {
    const sender = await startSend(["--text", Text])
    // script(1) gives the receiver a terminal; what it wrote there comes back on script's stdout.
    const command = [p2pal, "recv", "-y", ...signalApp.cliFlags(), sender.code].map((a) => `'${a}'`).join(" ")
    const received = await run("script", ["-qefc", command, "/dev/null"])
    expect((await sender.finished).code).toBe(0)
    expect(received.code).toBe(0)
    const screen = received.stdout.replace(/\r\n/g, "\n")
    expect(screen).toContain("hello\\u{001b}[31m red\\u{0007} world\ttab\nsecond line\n")
    expect(screen).not.toContain("\u001b[31m red")
    expect(screen).not.toContain("\u0007")
  })

  it("refuses a text over 64 KiB before a code is printed", async () => {
    const sent = await run(p2pal, ["send", ...signalApp.cliFlags(), "--text", "x".repeat(64 * 1024 + 1)])
    expect(sent.code).toBe(2)
    expect(sent.stderr).toContain("--text takes at most 64 KiB (65537 bytes given)")
    expect(sent.stdout).toBe("")
  })
})

describe("pipes: send - and recv --out -", () => {
  it("carries 50 MiB from one pipe to the other byte for byte (cmp), in bounded memory", async () => {
    const root = await tempDir()
    const source = path.join(root, "source.bin")
    await fs.writeFile(source, randomBytes(50 * MiB))
    const sender = await startSend(["-"], source)
    const senderPeak = peakMiB(sender.child.pid!, sender.finished)
    const received = await recvToFile(sender.code, path.join(root, "received.bin"))
    const sent = await finishedWithin(sender, 30_000, "the sender")
    expect({ received: received.code, sent: sent.code }).toEqual({ received: 0, sent: 0 })
    expect(await cmp(source, path.join(root, "received.bin"))).toBe(0)
    expect(received.stderr).toContain("Receiving: stdin (a pipe: size unknown)")
    // A process holds its runtime (about 150 MiB here); a pipe read whole into memory would add its 50 MiB.
    const peak = await senderPeak
    console.log(`send - of 50 MiB: sender peak RSS ${peak.toFixed(0)} MiB`)
    expect(peak).toBeLessThan(200)
  })

  it("holds the sender back while stdout is not read: it stops taking stdin", async () => {
    const root = await tempDir()
    const source = path.join(root, "source.bin")
    await fs.writeFile(source, randomBytes(50 * MiB))
    const sender = await startSend(["-"], source)
    const receiver = spawn(p2pal, ["recv", "-y", ...signalApp.cliFlags(), "--out", "-", sender.code], {
      stdio: ["ignore", "pipe", "ignore"],
    })
    receiver.stdout.pause()
    // It stops: two readings a second apart agree, and it has read far from all of it.
    let last = -1
    const stalled = await waitFor(
      "the sender to stop reading",
      async () => {
        const now = sender.fed()
        const same = now === last && now > MiB
        last = now
        await new Promise((resolve) => setTimeout(resolve, 1000))
        return same ? now : undefined
      },
      30_000,
    )
    console.log(
      `send - into an unread recv --out -: the sender stopped after ${(stalled / MiB).toFixed(1)} MiB`,
    )
    // The sender's 16 MiB ack window, plus what the pipes, the link and the receiver hold.
    expect(stalled).toBeLessThan(24 * MiB)
    const file = path.join(root, "received.bin")
    const ended = new Promise<number | null>((resolve) => receiver.on("close", resolve))
    await pipeline(receiver.stdout, createWriteStream(file))
    expect(await ended).toBe(0)
    expect((await finishedWithin(sender, 30_000, "the sender")).code).toBe(0)
    expect(await cmp(source, file)).toBe(0)
  })

  it("says a pipe cannot be resumed when the connection is lost: the sender killed, then the receiver", async () => {
    const NotResumable = "a pipe is read once, so it cannot be resumed or reconnected: send it again"
    for (const killed of ["sender", "receiver"] as const) {
      // A pipe that never ends: the transfer is under way until one side goes.
      const sender = start(p2pal, ["send", "-q", ...signalApp.cliFlags(), "-"], { keepStdinOpen: true })
      sender.child.stdin!.write(randomBytes(MiB))
      const [code] = await sender.line(/^[a-z]+-[a-z]+-\d+$/)
      const receiver = start(p2pal, ["recv", "-y", ...signalApp.cliFlags(), "--out", "-", code!])
      await receiver.line(/^Receiving: stdin \(a pipe: size unknown\)$/, "stderr")
      // Bytes on the receiver's stdout: the pipe is flowing.
      await waitFor("the first bytes on stdout", async () =>
        receiver.output().stdout.length > 0 ? true : undefined,
      )
      const [victim, survivor] = killed === "sender" ? [sender, receiver] : [receiver, sender]
      victim.child.kill("SIGKILL")
      const ended = await finishedWithin(
        survivor,
        30_000,
        `the ${killed === "sender" ? "receiver" : "sender"}`,
      )
      sender.child.stdin!.destroy()
      expect(ended.code).toBe(5)
      expect(ended.stderr).toContain(NotResumable)
      expect(ended.stderr).not.toContain("reconnecting")
      expect(ended.stderr).not.toContain("--resume")
    }
  })

  it("saves a pipe under --name into a directory", async () => {
    const root = await tempDir()
    const source = path.join(root, "source.bin")
    await fs.writeFile(source, randomBytes(3 * MiB + 5))
    const out = path.join(root, "out")
    const sender = await startSend(["--name", "backup.tar", "-"], source)
    const received = await run(p2pal, ["recv", "-y", ...signalApp.cliFlags(), "--out", out, sender.code])
    expect({ received: received.code, sent: (await sender.finished).code }).toEqual({ received: 0, sent: 0 })
    expect(await fs.readdir(out)).toEqual(["backup.tar"])
    expect(await cmp(source, path.join(out, "backup.tar"))).toBe(0)
  })

  it("recv --out - refuses several files before accepting (exit 2), and writes nothing", async () => {
    const root = await tempDir()
    await fs.mkdir(path.join(root, "two"))
    await fs.writeFile(path.join(root, "two", "a"), "a")
    await fs.writeFile(path.join(root, "two", "b"), "b")
    const sender = await startSend(["-r", path.join(root, "two")])
    const received = await run(p2pal, ["recv", "-y", ...signalApp.cliFlags(), "--out", "-", sender.code])
    const sent = await sender.finished
    expect(received.code).toBe(2)
    expect(received.stdout).toBe("")
    expect(received.stderr).toContain(
      "recv --out - writes one file to stdout, but the sender offers 3 entries; receive them into a directory instead",
    )
    expect(sent.code).toBe(5)
    expect(sent.stderr).toContain("the receiver takes one file only (recv --out -)")
  })
})
