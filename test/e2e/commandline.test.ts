import * as fs from "node:fs/promises"
import * as path from "node:path"
import { describe, expect, it } from "vitest"
import {
  bin,
  drawnLines,
  onTty,
  run,
  start,
  stderrMatch,
  tempDir,
  useSignalApp,
  waitFor,
} from "../support/Processes.js"

const signalApp = useSignalApp()
const p2pal = bin("p2pal")
const common = signalApp.cliFlags
const MiB = 1024 * 1024

/** `p2pal send -q` with `args`: its stdout carries only the join code. */
const startSend = async (args: ReadonlyArray<string>) => {
  const sender = start(p2pal, ["send", "-q", ...common(), ...args])
  const [code] = await sender.line(/^[a-z]+-[a-z]+-\d+$/)
  return { code: code!, finished: sender.finished }
}

/** One line on stderr, starting as p2pal's own messages do: no help page, no stack. */
const oneMessage = (stderr: string) => {
  const lines = stderr.trim().split("\n")
  expect(lines, stderr).toHaveLength(1)
  expect(lines[0]).toMatch(/^p2pal(-signal)?: /)
  return lines[0]!
}

describe("unknown flags are usage errors, not file names", () => {
  it.each([
    [["--bogus", "a.txt"], "unknown option --bogus; `p2pal send --help` lists the options"],
    [["-z", "a.txt"], "unknown option -z;"],
    [["-server", "http://x", "a.txt"], "unknown option -server; did you mean --server?"],
    [["--skip-error", "a.txt"], "unknown option --skip-error; did you mean --skip-errors?"],
  ])("send %j exits 2 naming the flag", async (args, message) => {
    const result = await run(p2pal, ["send", ...args])
    expect(result.code).toBe(2)
    expect(oneMessage(result.stderr)).toContain(message)
  })

  it("recv and checkpoint say so too, and short flags go apart", async () => {
    const recv = await run(p2pal, ["recv", "--outt", "x", "zebra-luna-47"])
    expect(recv.code).toBe(2)
    expect(oneMessage(recv.stderr)).toContain("unknown option --outt; did you mean --out?")
    const list = await run(p2pal, ["checkpoint", "list", "--all"])
    expect(list.code).toBe(2)
    expect(oneMessage(list.stderr)).toContain("unknown option --all")
    const cluster = await run(p2pal, ["recv", "-yq", "zebra-luna-47"])
    expect(cluster.code).toBe(2)
    expect(oneMessage(cluster.stderr)).toContain("unknown option -yq; write short flags apart: -y -q")
  })

  it("sends a file whose name starts with - when it comes after --", async () => {
    const root = await tempDir()
    await fs.writeFile(path.join(root, "-dash.txt"), "dash")
    // Run where the file is, so the name on the command line is the bare `-dash.txt`.
    const sender = start("sh", [
      "-c",
      'cd "$0" && exec "$@"',
      root,
      p2pal,
      "send",
      "-q",
      ...common(),
      "--",
      "-dash.txt",
    ])
    const [code] = await sender.line(/^[a-z]+-[a-z]+-\d+$/)
    const out = path.join(root, "out")
    const received = await run(p2pal, ["recv", "-y", ...common(), "--out", out, code!])
    expect([received.code, (await sender.finished).code]).toEqual([0, 0])
    expect(await fs.readFile(path.join(out, "-dash.txt"), "utf8")).toBe("dash")
  })
})

describe("--help reads as documentation", () => {
  it("describes every option with its default, shows --turn as optional, and has no escape codes in a pipe", async () => {
    const help = await run(p2pal, ["send", "--help"])
    expect(help.code).toBe(0)
    expect(help.stdout).not.toContain("\x1b")
    expect(help.stdout).not.toContain("A user-defined piece of text")
    expect(help.stdout).not.toContain("A true or false value")
    expect(help.stdout).toContain("[--turn URL...]")
    expect(help.stdout).toContain("--server URL")
    expect(help.stdout).toContain("default http://localhost:8080")
    expect(help.stdout).toContain("--chunk-size KiB")
    expect(help.stdout).toContain("chunk size in KiB, 1 to 63; default 63")
  })

  it("colours on a terminal, and not with NO_COLOR set", async () => {
    const [command, args] = onTty(p2pal, ["recv", "--help"])
    const coloured = await run(command, args)
    expect(coloured.stdout).toContain("\x1b[")
    const plain = await start(command, args, { env: { NO_COLOR: "1" } }).finished
    expect(plain.stdout).toContain("--out DIR")
    expect(plain.stdout).not.toContain("\x1b[")
  })
})

describe("every message a person can cause is one sentence with its exit code", () => {
  it("an https:// URL against the plain-http signal app: exit 4, no OpenSSL dump", async () => {
    const root = await tempDir()
    await fs.writeFile(path.join(root, "a.txt"), "a")
    const https = signalApp.url().replace(/^http:/, "https:")
    const result = await run(p2pal, ["send", "--server", https, "--stun", "", path.join(root, "a.txt")])
    expect(result.code).toBe(4)
    expect(result.stderr).toContain(
      `p2pal: the signal server at ${https} does not speak TLS; if it serves plain HTTP, use --server ${signalApp.url()}`,
    )
    expect(result.stderr).not.toMatch(/SSL routines|EPROTO/)
  })

  it("recv --out naming a file: exit 2 before joining, with the p2pal: prefix", async () => {
    const root = await tempDir()
    const file = path.join(root, "a.txt")
    await fs.writeFile(file, "a")
    const result = await run(p2pal, ["recv", ...common(), "--out", file, "zebra-luna-47"])
    expect(result.code).toBe(2)
    expect(oneMessage(result.stderr)).toBe(
      `p2pal: --out ${file} is not a directory; name a directory (it is created if missing)`,
    )
  })

  it("a missing file: exit 7 in words, without Node's syscall text", async () => {
    const root = await tempDir()
    const missing = path.join(root, "missing.txt")
    const result = await run(p2pal, ["send", ...common(), missing])
    expect(result.code).toBe(7)
    expect(oneMessage(result.stderr)).toBe(
      `p2pal: ${missing}: no such file or directory (ENOENT); nothing was sent (--skip-errors sends the rest without it)`,
    )
  })

  it("p2pal-signal --port 99999: exit 2, one line, no stack", async () => {
    const result = await run(bin("p2pal-signal"), ["--port", "99999"])
    expect(result.code).toBe(2)
    expect(oneMessage(result.stderr)).toBe("p2pal-signal: --port must be between 0 and 65535")
  })

  it("a code that was used is reported as used, not expired", async () => {
    const root = await tempDir()
    await fs.writeFile(path.join(root, "a.txt"), "a")
    const { code, finished } = await startSend([path.join(root, "a.txt")])
    const first = await run(p2pal, ["recv", "-y", ...common(), "--out", path.join(root, "one"), code])
    expect([first.code, (await finished).code]).toEqual([0, 0])
    const again = await run(p2pal, ["recv", "-y", ...common(), "--out", path.join(root, "two"), code])
    expect(again.code).toBe(3)
    expect(again.stderr).toContain(
      "p2pal: that code was already used by a receiver; ask the sender for a new one",
    )
    expect(again.stderr).not.toContain("expired")
  })

  it("--skip-errors skips a missing file like an unreadable one: the rest arrives, exit 10", async () => {
    const root = await tempDir()
    await fs.writeFile(path.join(root, "here.txt"), "here")
    const missing = path.join(root, "gone.txt")
    const { code, finished } = await startSend(["--skip-errors", path.join(root, "here.txt"), missing])
    const out = path.join(root, "out")
    const received = await run(p2pal, ["recv", "-y", ...common(), "--out", out, code])
    const sent = await finished
    expect([received.code, sent.code]).toEqual([0, 10])
    expect(sent.stderr).toContain(`skipped ${missing}: no such file or directory (ENOENT)`)
    expect(await fs.readdir(out)).toEqual(["here.txt"])
  })
})

describe("Ctrl+C leaves the screen readable", () => {
  it("at the prompt, it ends the prompt's line", async () => {
    const root = await tempDir()
    await fs.writeFile(path.join(root, "a.txt"), "a")
    const { code, finished } = await startSend([path.join(root, "a.txt")])
    const receiver = start(p2pal, ["recv", ...common(), "--out", path.join(root, "out"), code], {
      keepStdinOpen: true,
    })
    await stderrMatch(receiver, /\[y\/N\] $/)
    receiver.child.kill("SIGINT")
    const received = await receiver.finished
    expect(received.code).toBe(130)
    expect(received.stderr).toMatch(/\[y\/N\] \n$/)
    await finished
  })

  it("mid-transfer on a terminal, the last progress bars stay on screen above the resume hint", async () => {
    const root = await tempDir()
    const file = path.join(root, "large.bin")
    await fs.writeFile(file, "")
    await fs.truncate(file, 512 * MiB)
    const { code, finished } = await startSend([file])
    const [command, args] = onTty(p2pal, ["recv", "-y", ...common(), "--out", path.join(root, "out"), code])
    const receiver = start(command, args, { keepStdinOpen: true })
    await waitFor("a progress bar with a rate", async () =>
      /\/s {2}ETA/.test(receiver.output().stdout) ? true : undefined,
    )
    // Ctrl+C typed at the terminal: its line discipline turns it into SIGINT.
    receiver.child.stdin!.write("\x03")
    const tty = (await receiver.finished).stdout
    await finished
    const lines = drawnLines(tty).filter((line) => line.trim() !== "")
    // The terminal echoes the ^C where the cursor is: below the bars.
    const hint = lines.findIndex((line) => /^(\^C)?Interrupted\. Kept what arrived/.test(line))
    expect(hint, tty).toBeGreaterThan(1)
    expect(lines[hint - 1]).toMatch(/^\[[= ]{20}\] +\d+%  [\d.]+ [kMG]?B \/ 536\.9 MB/)
    expect(lines[hint - 2]).toMatch(/^\[[= ]{20}\] +\d+%  large\.bin$/)
  })
})
