import { spawn } from "node:child_process"
import * as fs from "node:fs/promises"
import * as path from "node:path"
import { describe, expect, it } from "vitest"
import {
  bin,
  finishedWithin,
  midTransfer,
  type Running,
  start,
  startSignal,
  stderrMatch,
  tempDir,
  useSignalApp,
} from "../support/Processes.js"

const signalApp = useSignalApp()
const p2pal = bin("p2pal")
const joinCode = /^[a-z]+-[a-z]+-\d+$/
const resumeHint = /resume/i

/** A fresh P2PAL_HOME, so its checkpoint list holds only what this test's processes left. */
const home = async () => ({ P2PAL_HOME: await tempDir() })

const checkpointList = async (env: { P2PAL_HOME: string }) => {
  const listed = await start(p2pal, ["checkpoint", "list"], { env }).finished
  expect(listed.code, listed.stderr).toBe(0)
  return listed.stdout.trim()
}

const smallFile = async () => {
  const root = await tempDir()
  const file = path.join(root, "small.bin")
  await fs.writeFile(file, "a few bytes")
  return { root, file }
}

const startSend = async (
  env: { P2PAL_HOME: string },
  file: string,
  flags: ReadonlyArray<string> = [],
  server = signalApp.url(),
) => {
  const sender = start(p2pal, ["send", "-q", "--server", server, "--stun", "", ...flags, file], { env })
  const [code] = await sender.line(joinCode)
  return { code: code!, sender }
}

/** `p2pal recv ...args` into `out` through the test's signal app, `stdin` as its input. */
const startRecv = (env: { P2PAL_HOME: string }, out: string, args: ReadonlyArray<string>, stdin?: string) =>
  start(
    p2pal,
    ["recv", "--server", signalApp.url(), "--stun", "", "--out", out, ...args],
    stdin === undefined ? { env } : { env, stdin },
  )

/** The sender ended as `exitCode` without a resume hint, and left no checkpoint behind. */
const endedWithNothingKept = async (
  sender: Running,
  exitCode: number,
  env: { P2PAL_HOME: string },
  what: string,
) => {
  const sent = await finishedWithin(sender, 20_000, what)
  expect(sent.code, sent.stderr).toBe(exitCode)
  expect(sent.stderr).not.toMatch(resumeHint)
  expect(await checkpointList(env)).toBe("No checkpoints.")
}

describe("a code read from stdin is bounded", () => {
  it("recv < /dev/zero stops at once with a usage error (exit 2) instead of reading without end", async () => {
    const zero = await fs.open("/dev/zero", "r")
    try {
      const child = spawn(p2pal, ["recv", "--server", signalApp.url()], {
        stdio: [zero.fd, "ignore", "pipe"],
      })
      let stderr = ""
      child.stderr!.setEncoding("utf8").on("data", (d: string) => (stderr += d))
      const code = await new Promise<number | null>((resolve) => child.on("close", resolve))
      expect(code, stderr).toBe(2)
      expect(stderr).toMatch(/^p2pal: no join code on stdin: no line end within 256 bytes$/m)
    } finally {
      await zero.close()
    }
  })

  it("a code followed by more lines is still read (the rest waits for the prompt)", async () => {
    const { root, file } = await smallFile()
    const env = await home()
    const { code, sender } = await startSend(env, file)
    const out = path.join(root, "out")
    const received = await finishedWithin(
      startRecv(env, out, [], `${code}\ny\n`),
      30_000,
      "recv with the code and the answer on stdin",
    )
    expect(received.code, received.stderr).toBe(0)
    expect((await finishedWithin(sender, 20_000, "send")).code).toBe(0)
    expect(await fs.readFile(path.join(out, "small.bin"), "utf8")).toBe("a few bytes")
  })
})

describe("a failed attempt that moved nothing leaves no checkpoint and no resume hint", () => {
  it("a code that expires unused", async () => {
    const env = await home()
    const { sender } = await startSend(env, (await smallFile()).file, ["--ttl", "2s"])
    await endedWithNothingKept(sender, 3, env, "send with an expiring code")
  })

  it("a receiver that declines", async () => {
    const { root, file } = await smallFile()
    const env = await home()
    const { code, sender } = await startSend(env, file)
    const received = await finishedWithin(
      startRecv(env, path.join(root, "out"), [code], "n\n"),
      30_000,
      "recv answering no",
    )
    expect(received.code, received.stderr).toBe(8)
    expect(received.stderr).not.toMatch(resumeHint)
    await endedWithNothingKept(sender, 5, env, "send to a receiver that declines")
  })

  it("a burned code (a wrong word)", async () => {
    const { root, file } = await smallFile()
    const env = await home()
    const { code, sender } = await startSend(env, file)
    const wrong = code.replace(/^[a-z]+/, (word) => (word === "zebra" ? "apple" : "zebra"))
    const received = await finishedWithin(
      startRecv(env, path.join(root, "out"), ["-y", wrong]),
      30_000,
      "recv with a wrong word",
    )
    expect(received.code, received.stderr).toBe(9)
    await endedWithNothingKept(sender, 9, env, "send whose code was burned")
  })

  it("Ctrl+C while the sender waits for a receiver", async () => {
    const env = await home()
    const { sender } = await startSend(env, (await smallFile()).file)
    sender.child.kill("SIGINT")
    await endedWithNothingKept(sender, 130, env, "send interrupted while waiting")
  })

  it("a receiver without the disk space, which refuses before accepting", async () => {
    const { root } = await smallFile()
    // Sparse: 15 TiB that take no room, more than any test machine has free.
    const file = path.join(root, "huge.bin")
    await fs.writeFile(file, "")
    await fs.truncate(file, 15 * 1024 ** 4)
    const env = await home()
    const { code, sender } = await startSend(env, file)
    const received = await finishedWithin(
      startRecv(env, path.join(root, "out"), ["-y", code]),
      30_000,
      "recv without the space",
    )
    expect(received.code, received.stderr).toBe(7)
    expect(received.stderr).toMatch(/not enough free disk space/)
    expect(received.stderr).not.toMatch(resumeHint)
    await endedWithNothingKept(sender, 5, env, "send to a receiver without the space")
  })

  it("(control: once the receiver accepted, an interrupted sender keeps its checkpoint and says how to resume)", async () => {
    const { root } = await smallFile()
    const file = path.join(root, "large.bin")
    await fs.writeFile(file, "")
    await fs.truncate(file, 1024 ** 3)
    const env = await home()
    const { code, sender } = await startSend(env, file)
    const receiver = startRecv(env, path.join(root, "out"), ["-y", code])
    await midTransfer(path.join(root, "out"), "large.bin", [sender, receiver])
    sender.child.kill("SIGINT")
    const sent = await finishedWithin(sender, 20_000, "send interrupted mid-transfer")
    receiver.child.kill("SIGINT")
    await receiver.finished
    expect(sent.code, sent.stderr).toBe(130)
    expect(sent.stderr).toMatch(/Resume with: p2pal send --resume [\w-]+/)
    expect(await checkpointList(env)).not.toBe("No checkpoints.")
  })
})

describe("a signal app that stops while the sender waits", () => {
  it("is reported at once, with how long the sender keeps retrying, and then that it gave up", async () => {
    const signal = await startSignal()
    const env = await home()
    const { sender } = await startSend(env, (await smallFile()).file, [], signal.url)
    const told = stderrMatch(sender, /the signal app went away \(([^)]*)\); retrying for up to (\d+)s/)
    const stoppedAt = Date.now()
    await signal.stop()
    const [, why, seconds] = await told
    expect(Date.now() - stoppedAt, "said at once, not after the retries").toBeLessThan(5_000)
    expect(why).toMatch(/^1001 /)
    expect(Number(seconds)).toBe(30)
    // It stays away: after the retries the sender says so, with the close it saw (exit 4, no checkpoint).
    const sent = await finishedWithin(sender, 60_000, "send whose signal app stays away")
    expect(sent.stderr).toMatch(
      /^p2pal: the signal server at \S+ failed: it went away and did not come back within 30s \(1001 [^)]*\)$/m,
    )
    await endedWithNothingKept(sender, 4, env, "send whose signal app stays away")
  }, 120_000)
})
