import * as fs from "node:fs/promises"
import * as path from "node:path"
import { describe, expect, it } from "vitest"
import {
  bin,
  drawnLines,
  snapshot,
  start,
  startOnTty,
  useSignalApp,
  stderrMatch,
  tempDir,
} from "../support/Processes.js"

const signalApp = useSignalApp()

const p2pal = bin("p2pal")
const MiB = 1024 * 1024
const common = signalApp.cliFlags
const verified = "[====================] 100% — SHA-256 verified"
/** The summary's last line: on loopback the peers connect directly. */
const connectedLine = expect.stringMatching(
  /^Connected directly: \w+ \S+ <-> \w+ \S+(, RTT \d+ ms)?(, over \d+ connections at most)?$/,
)

/** Two files, a.bin and b.bin, of the given sizes in MiB (sparse, so instant to make). */
const sources = async (aMiB: number, bMiB: number) => {
  const root = await tempDir()
  const dir = path.join(root, "src")
  await fs.mkdir(dir)
  const files = [
    { name: "a.bin", size: aMiB * MiB },
    { name: "b.bin", size: bMiB * MiB },
  ]
  for (const { name, size } of files) {
    await fs.writeFile(path.join(dir, name), "")
    await fs.truncate(path.join(dir, name), size)
  }
  return { root, dir, files: files.map((f) => path.join(dir, f.name)) }
}

/** `p2pal send -q` with its stdout piped: the code is its only output. */
const startSend = async (files: ReadonlyArray<string>) => {
  const sender = start(p2pal, ["send", "-q", ...common(), ...files])
  const [code] = await sender.line(/^[a-z]+-[a-z]+-\d+$/)
  return { code: code!, finished: sender.finished }
}

/**
 * What a terminal shows after receiving `output`: the part of VT100 the CLI uses (CR, LF, cursor up,
 * erase line). Anything else fails loudly, so a new escape sequence cannot slip by unchecked.
 */
const render = (output: string): Array<string> => {
  const screen: Array<string> = [""]
  let row = 0
  let column = 0
  for (let i = 0; i < output.length;) {
    if (output[i] === "\x1b") {
      const sequence = /^\x1b\[(\d*)([A-Za-z])/.exec(output.slice(i, i + 8))
      const n = Number(sequence?.[1] || "1")
      if (sequence?.[2] === "A") row = Math.max(0, row - n)
      else if (sequence?.[2] === "K" && n === 2) screen[row] = ""
      else throw new Error(`unexpected escape sequence ${JSON.stringify(output.slice(i, i + 8))}`)
      i += sequence[0].length
      continue
    }
    const char = output[i++]!
    if (char === "\r") column = 0
    else if (char === "\n") {
      row++
      while (screen.length <= row) screen.push("")
    } else {
      const line = screen[row]!.padEnd(column)
      screen[row] = line.slice(0, column) + char + line.slice(column + 1)
      column++
    }
  }
  while (screen.length > 0 && screen[screen.length - 1] === "") screen.pop()
  return screen
}

/** The total bar, for a transfer of `total` ("67.1 MB") in `files` files. */
const totalBar = (total: string, files: number) =>
  new RegExp(
    `^\\[[= ]{20}\\] +(\\d+)%  ([\\d.]+ [kMGT]?B) / ${total.replace(".", "\\.")}  (\\d+)/${files} files  ([\\d.]+ [kMGT]?B)/s  ETA (\\d+s|\\d+m\\d\\ds|--)$`,
  )
const fileBar = /^\[[= ]{20}\] +(\d+)%  (.*)$/

describe("progress output", () => {
  it("on a TTY draws a per-file bar naming the file and a total bar (bytes, files, rate, ETA) and ends with the verified line", async () => {
    // 160 + 96 MiB: over 2 s even at a gigabit on loopback, so the 200 ms redraw catches the middle of
    // the transfer several times however fast the machine.
    const { root, dir, files } = await sources(160, 96)
    const manifestLines = ["Receiving 2 files (268.4 MB):", "  a.bin  167.8 MB", "  b.bin  100.7 MB"]
    const totalBarOf = totalBar("268.4 MB", 2)
    const out = path.join(root, "out")
    const sender = await startSend(files)
    const receiver = startOnTty(p2pal, ["recv", "-y", ...common(), "--out", out, sender.code])
    const received = await receiver.finished
    const tty = received.stdout
    expect({ receiver: received.code, sender: (await sender.finished).code }, tty).toEqual({
      receiver: 0,
      sender: 0,
    })
    expect(await snapshot(out)).toEqual(await snapshot(dir))

    expect(tty, "bars are redrawn in place").toContain("\x1b[2A")
    const lines = drawnLines(tty)
    const totals = lines.flatMap((l) => {
      const m = l.match(totalBarOf)
      return m ? [{ percent: Number(m[1]), done: m[2]!, files: Number(m[3]), rate: m[4]!, eta: m[5]! }] : []
    })
    const fileBars = lines.flatMap((l) => {
      const m = totalBarOf.test(l) || l === verified ? null : l.match(fileBar)
      return m ? [{ percent: Number(m[1]), name: m[2]! }] : []
    })
    expect(totals.length, "total bars drawn").toBeGreaterThan(1)
    expect(
      totals.some((t) => t.percent > 0 && t.percent < 100 && !t.rate.startsWith("0 ") && t.eta !== "--"),
      `a total bar mid-transfer with a rate and an ETA, among:\n${totals.map((t) => JSON.stringify(t)).join("\n")}`,
    ).toBe(true)
    expect(fileBars.length, "a per-file bar with every total bar").toBe(totals.length)
    expect(fileBars.some((b) => b.name === "a.bin" && b.percent < 100)).toBe(true)
    // Each redraw writes the file bar, then the total bar: while a.bin moves no file is done, then one.
    const filesDone = fileBars.map((b, i) => ({ name: b.name, done: totals[i]!.files }))
    expect(filesDone).toContainEqual({ name: "a.bin", done: 0 })
    expect(filesDone.filter((f) => f.done !== (f.name === "a.bin" ? 0 : 1))).toEqual([])
    expect
      .soft(
        fileBars.filter((b) => b.name !== "a.bin" && b.name !== "b.bin"),
        "per-file bars that do not name the file they measure",
      )
      .toEqual([])
    // The last thing left on the screen: the manifest, the verified line and how the peers connected;
    // the bars are gone.
    expect.soft(render(tty)).toEqual(["Joining transfer...", ...manifestLines, verified, connectedLine])
  })

  it("without a TTY draws no bars: plain lines only, ending with the verified and the connection lines", async () => {
    const { root, dir, files } = await sources(16, 8)
    const manifestLines = ["Receiving 2 files (25.2 MB):", "  a.bin  16.8 MB", "  b.bin  8.4 MB"]
    const out = path.join(root, "out")
    const sender = start(p2pal, ["send", ...common(), ...files])
    const [, code] = await stderrMatch(sender, /Join code: (\S+)\n/)
    const receiver = start(p2pal, ["recv", "-y", ...common(), "--out", out, code!])
    const [received, sent] = await Promise.all([receiver.finished, sender.finished])
    expect({ receiver: received.code, sender: sent.code }).toEqual({ receiver: 0, sender: 0 })
    expect(await snapshot(out)).toEqual(await snapshot(dir))

    expect(received.stdout).toBe("")
    expect(received.stderr).not.toMatch(/[\x1b\r]/)
    expect(received.stderr.split("\n")).toEqual([
      ...["Joining transfer...", ...manifestLines, verified, connectedLine, ""],
    ])
    expect(sent.stderr).not.toMatch(/[\x1b\r]/)
    expect(sent.stderr).toContain(`\n${verified}\n`)
  })

  it("with -q prints nothing at all, even on a TTY (the sender only its code)", async () => {
    const { root, dir, files } = await sources(16, 8)
    const out = path.join(root, "out")
    const sender = startOnTty(p2pal, ["send", "-q", ...common(), ...files])
    const [, code] = await sender.line(/^([a-z]+-[a-z]+-\d+)\r?$/)
    const receiver = startOnTty(p2pal, ["recv", "-y", "-q", ...common(), "--out", out, code!])
    const [received, sent] = await Promise.all([receiver.finished, sender.finished])
    expect({
      receiverExit: received.code,
      receiverTty: received.stdout,
      senderExit: sent.code,
      senderTty: sent.stdout,
    }).toEqual({ receiverExit: 0, receiverTty: "", senderExit: 0, senderTty: `${code}\r\n` })
    expect(await snapshot(out)).toEqual(await snapshot(dir))
  })
})
