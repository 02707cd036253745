import { randomBytes } from "node:crypto"
import * as fs from "node:fs/promises"
import * as path from "node:path"
import { describe, expect, it } from "vitest"
import { bin, drawnLines, run, snapshot, startOnTty, tempDir, useSignalApp } from "../support/Processes.js"

const signalApp = useSignalApp()
const p2pal = bin("p2pal")

describe("--limit-rate through the real CLI", () => {
  it("both sides keep to the cap and say so next to the rate", async () => {
    const root = await tempDir()
    const src = path.join(root, "src")
    await fs.mkdir(src)
    // 8 MiB at 4 MiB/s: about 2 s, long enough for the 200 ms redraw to show the bars several times.
    await fs.writeFile(path.join(src, "random.bin"), randomBytes(8 * 1024 * 1024))
    const out = path.join(root, "out")
    const sender = startOnTty(p2pal, ["send", "--limit-rate", "4M", ...signalApp.cliFlags(), "-r", src])
    const [, code] = await sender.line(/Join code: ([a-z]+-[a-z]+-\d+)/)
    const started = performance.now()
    const receiver = startOnTty(p2pal, [
      "recv",
      "-y",
      "--limit-rate",
      "4M",
      ...signalApp.cliFlags(),
      "--out",
      out,
      code!,
    ])
    const [received, sent] = await Promise.all([receiver.finished, sender.finished])
    const seconds = (performance.now() - started) / 1000
    expect({ receiver: received.code, sender: sent.code }).toEqual({ receiver: 0, sender: 0 })
    expect(await snapshot(path.join(out, "src"))).toEqual(await snapshot(src))
    // The cap makes it take 2 s at least; joining and the PAKE add a second or two on top.
    expect(seconds).toBeGreaterThan(2 * 0.85)
    for (const tty of [received.stdout, sent.stdout])
      expect(
        drawnLines(tty).some((line) => /\/s \(limited to 4 MiB\/s\)/.test(line)),
        tty,
      ).toBe(true)
  })

  it("refuses a rate curl would not take, as a usage error", async () => {
    for (const command of ["send", "recv"]) {
      const result = await run(p2pal, [command, "--limit-rate", "10MB", "x"])
      expect(result.code).toBe(2)
      expect(result.stderr).toContain("--limit-rate 10MB is not a rate like 500K, 10M or 1G")
    }
  })
})
