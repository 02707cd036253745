import { randomBytes } from "node:crypto"
import * as fs from "node:fs/promises"
import * as path from "node:path"
import { describe, expect, it } from "vitest"
import { bin, run, snapshot, start, tempDir, useSignalApp } from "../support/Processes.js"

const signalApp = useSignalApp()
const p2pal = bin("p2pal")

/** Log lines: zstd shrinks them many times over. */
const logText = (bytes: number) => {
  const lines: Array<string> = []
  for (let i = 0, length = 0; length < bytes; i++) {
    const line = `2026-12-07T18:${String(i % 60).padStart(2, "0")}:00Z INFO GET /api/items/${i % 211} 200 ${i % 97}ms\n`
    lines.push(line)
    length += line.length
  }
  return lines.join("").slice(0, bytes)
}

/** A tree of compressible, incompressible and compressed-already files. */
const mixedTree = async (root: string) => {
  const tree = path.join(root, "mixed")
  await fs.mkdir(path.join(tree, "logs"), { recursive: true })
  await fs.writeFile(path.join(tree, "logs", "app.log"), logText(6 * 1024 * 1024 + 5))
  await fs.writeFile(path.join(tree, "random.bin"), randomBytes(3 * 1024 * 1024 + 7))
  // Compressible bytes under a compressed type's name: auto goes by the name and sends them raw.
  await fs.writeFile(path.join(tree, "archive.zip"), logText(1024 * 1024))
  await fs.writeFile(path.join(tree, "small.txt"), "hello\n")
  return tree
}

/** Sends `tree` with `args`, receives it, and returns the sender's stderr; both must exit 0. */
const roundTrip = async (tree: string, out: string, args: ReadonlyArray<string>) => {
  const sender = start(p2pal, ["send", ...signalApp.cliFlags(), ...args, "-r", tree])
  const [, code] = await sender.line(/^Join code: (\S+)$/, "stderr")
  const received = await run(p2pal, ["recv", "-y", "-q", ...signalApp.cliFlags(), "--out", out, code!])
  const sent = await sender.finished
  expect({ received: received.code, sent: sent.code, stderr: received.stderr }).toEqual({
    received: 0,
    sent: 0,
    stderr: "",
  })
  expect(await snapshot(path.join(out, "mixed"))).toEqual(await snapshot(tree))
  return sent.stderr
}

const ratioOf = (stderr: string) => {
  const match = stderr.match(/^Compression: zstd, .* on the wire \(ratio (\d+\.\d+)\)$/m)
  return match === null ? undefined : Number(match[1])
}

describe("send --compress through the real signal app", () => {
  it("auto compresses the log, sends the .zip and the random bytes raw, and says so", async () => {
    const root = await tempDir()
    const tree = await mixedTree(root)
    // Capped: on bare loopback the link may outrun the compressor, and auto then rightly sends raw.
    const stderr = await roundTrip(tree, path.join(root, "out"), ["--limit-rate", "16M"])
    expect(ratioOf(stderr)).toBeGreaterThan(1.5)
    const raw = stderr.match(/^Sent raw by --compress auto: (.*)$/m)?.[1]
    expect(raw?.split(", ").sort()).toEqual([
      "mixed/archive.zip (already compressed)",
      "mixed/random.bin (incompressible)",
    ])
  })

  it("zstd compresses whatever shrinks, the .zip's text too", async () => {
    const root = await tempDir()
    const tree = await mixedTree(root)
    const stderr = await roundTrip(tree, path.join(root, "out"), [
      "--compress",
      "zstd",
      "--compress-level",
      "3",
    ])
    expect(ratioOf(stderr)).toBeGreaterThan(2)
    expect(stderr).not.toContain("Sent raw by")
  })

  it("none sends every byte as it is and prints no compression line", async () => {
    const root = await tempDir()
    const tree = await mixedTree(root)
    const stderr = await roundTrip(tree, path.join(root, "out"), ["--compress", "none"])
    expect(stderr).not.toContain("Compression:")
  })

  it("--encrypt sends raw, and says compression is off", async () => {
    const root = await tempDir()
    const tree = await mixedTree(root)
    const stderr = await roundTrip(tree, path.join(root, "out"), ["--encrypt"])
    expect(stderr).toMatch(/^Compression: off with --encrypt/m)
  })

  it("refuses a level out of range as a usage error", async () => {
    const result = await run(p2pal, ["send", "--compress-level", "20", "x"])
    expect(result.code).toBe(2)
    expect(result.stderr).toContain("--compress-level must be between 1 and 19 (got 20)")
  })
})
