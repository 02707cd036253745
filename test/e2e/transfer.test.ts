import { randomBytes } from "node:crypto"
import * as fs from "node:fs/promises"
import * as net from "node:net"
import * as path from "node:path"
import { describe, expect, it } from "vitest"
import { bin, run, snapshot, start, useSignalApp, stderrMatch, tempDir } from "../support/Processes.js"

const signalApp = useSignalApp()

const p2pal = bin("p2pal")

/** A loopback port nothing listens on: bound by the OS, then released. */
const closedPort = () =>
  new Promise<number>((resolve) => {
    const server = net.createServer().listen(0, "127.0.0.1", () => {
      const { port } = server.address() as net.AddressInfo
      server.close(() => resolve(port))
    })
  })
const common = signalApp.cliFlags

/** `p2pal send -q`: its stdout carries only the join code. */
const startSend = async (args: ReadonlyArray<string>) => {
  const sender = start(p2pal, ["send", "-q", ...common(), ...args])
  const [code] = await sender.line(/^[a-z]+-[a-z]+-\d+$/)
  return { code: code!, finished: sender.finished }
}

const recv = (code: string, args: ReadonlyArray<string>, stdin?: string) =>
  run(p2pal, ["recv", ...common(), ...args, code], stdin === undefined ? {} : { stdin })

const makeTree = async (root: string) => {
  const tree = path.join(root, "my tree")
  await fs.mkdir(path.join(tree, "a", "b", "c"), { recursive: true })
  await fs.mkdir(path.join(tree, "empty dir"))
  await fs.writeFile(path.join(tree, "a", "b", "c", "random.bin"), randomBytes(5 * 1024 * 1024 + 123))
  await fs.writeFile(path.join(tree, "a", "hello.txt"), "hello\n")
  await fs.writeFile(path.join(tree, "empty"), "")
  await fs.writeFile(path.join(tree, "naïve façade ünïcødé 文件.txt"), "non-ascii name\n")
  return tree
}

describe("p2pal send / recv through the real signal app", () => {
  it("round-trips a directory tree byte for byte (-r, -q, empty file, empty dir, non-ASCII names)", async () => {
    const root = await tempDir()
    const tree = await makeTree(root)
    const out = path.join(root, "out")
    const sender = await startSend(["-r", tree])
    const received = await recv(sender.code, ["-y", "-q", "--out", out])
    const sent = await sender.finished
    expect(received).toMatchObject({ code: 0, stdout: "", stderr: "" })
    expect(sent.code).toBe(0)
    expect(sent.stdout).toBe(`${sender.code}\n`)
    expect(await snapshot(path.join(out, "my tree"))).toEqual(await snapshot(tree))
    expect(await fs.readdir(out)).toEqual(["my tree"])
  })

  it("--encrypt seals the chunks too: the receiver is told, and the tree arrives byte for byte", async () => {
    const root = await tempDir()
    const tree = await makeTree(root)
    const out = path.join(root, "out")
    const sender = await startSend(["--encrypt", "-r", tree])
    const received = await recv(sender.code, ["-y", "--out", out])
    const sent = await sender.finished
    expect({ received: received.code, sent: sent.code }).toEqual({ received: 0, sent: 0 })
    expect(received.stderr).toContain("Chunks are sealed with AES-256-GCM on top of DTLS.")
    expect(await snapshot(path.join(out, "my tree"))).toEqual(await snapshot(tree))
  })

  it("takes the code from $P2PAL_CODE or stdin (a blank $P2PAL_CODE counts as unset), and --verify shows the same digits on both sides", async () => {
    const root = await tempDir()
    const file = path.join(root, "note.txt")
    await fs.writeFile(file, "kept out of shell history\n")
    const verified = /^Verification: (\d{3} \d{3}) — /m
    for (const via of ["env", "stdin"] as const) {
      const out = path.join(root, `out-${via}`)
      const sender = start(p2pal, ["send", "-q", "--verify", ...common(), file])
      const [code] = await sender.line(/^[a-z]+-[a-z]+-\d+$/)
      const args = ["recv", "-y", "--verify", ...common(), "--out", out]
      const received =
        via === "env"
          ? await start(p2pal, args, { env: { P2PAL_CODE: code! } }).finished
          : await start(p2pal, args, { stdin: `${code}\n`, env: { P2PAL_CODE: " " } }).finished
      const sent = await sender.finished
      expect({ via, received: received.code, sent: sent.code }).toEqual({ via, received: 0, sent: 0 })
      const [, mine] = verified.exec(received.stderr) ?? []
      const [, theirs] = verified.exec(sent.stderr) ?? []
      expect(mine).toMatch(/^\d{3} \d{3}$/)
      expect(theirs).toBe(mine)
      expect(await fs.readFile(path.join(out, "note.txt"), "utf8")).toBe("kept out of shell history\n")
    }
  })

  it("sends several files at once into a new --out directory, and shows the manifest", async () => {
    const root = await tempDir()
    const files = ["one.txt", "two.bin", "three"].map((n) => path.join(root, n))
    await Promise.all(files.map((f, i) => fs.writeFile(f, randomBytes(1000 * i + 1))))
    const out = path.join(root, "does", "not", "exist")
    const sender = await startSend(files)
    const received = await recv(sender.code, ["-y", "--out", out])
    expect((await sender.finished).code).toBe(0)
    expect(received.code).toBe(0)
    expect(received.stderr).toContain("Receiving 3 files")
    expect(received.stderr).toContain("one.txt")
    expect(received.stderr).toContain("100% — SHA-256 verified")
    for (const f of files)
      expect(await fs.readFile(path.join(out, path.basename(f)))).toEqual(await fs.readFile(f))
  })

  it("summarises a tree of 50 files before accepting it, and lists every entry with --list-all", async () => {
    const root = await tempDir()
    const tree = path.join(root, "tree")
    for (let i = 0; i < 50; i++) {
      const dir = path.join(tree, `d${Math.floor(i / 10)}`)
      await fs.mkdir(dir, { recursive: true })
      await fs.writeFile(path.join(dir, `f${String(i).padStart(2, "0")}.txt`), "x".repeat(100))
    }
    const summarised = await startSend(["-r", tree])
    const short = await recv(summarised.code, ["-y", "--out", path.join(root, "short")])
    expect({ sent: (await summarised.finished).code, received: short.code }).toEqual({ sent: 0, received: 0 })
    expect(short.stderr).toContain(
      [
        "Receiving 50 files (5.0 kB):",
        "  tree/",
        "  tree/d0/",
        "  tree/d0/f00.txt  100 B",
        ...Array.from({ length: 7 }, (_, i) => `  tree/d0/f0${i + 1}.txt  100 B`),
        "  ... and 46 more (--list-all shows every one)",
        "By top folder:",
        "  tree/  50 files, 5.0 kB",
        "Total: 50 files, 5.0 kB",
      ].join("\n"),
    )
    expect(short.stderr).not.toContain("f49.txt")

    const listed = await startSend(["-r", tree])
    const all = await recv(listed.code, ["-y", "--list-all", "--out", path.join(root, "all")])
    expect({ sent: (await listed.finished).code, received: all.code }).toEqual({ sent: 0, received: 0 })
    expect(all.stderr).toContain(
      "Receiving 50 files (5.0 kB):\n  tree/\n  tree/d0/\n  tree/d0/f00.txt  100 B\n",
    )
    expect(all.stderr).toContain("  tree/d4/\n  tree/d4/f40.txt  100 B\n")
    expect(all.stderr).toContain("  tree/d4/f49.txt  100 B\n")
    expect(all.stderr).not.toContain("By top folder:")
    expect(await snapshot(path.join(root, "all", "tree"))).toEqual(await snapshot(tree))
  })

  it("sends a single file and prints the seed's lines", async () => {
    const root = await tempDir()
    const file = path.join(root, "report.pdf")
    await fs.writeFile(file, randomBytes(2_300_000))
    const sender = start(p2pal, ["send", ...common(), file])
    const finishedSending = sender.finished
    const out = path.join(root, "out")
    // Without -q the code is on stderr with the other human lines; wait for it there.
    const code = await new Promise<string>((resolve, reject) => {
      let text = ""
      sender.child.stderr!.on("data", (d: Buffer) => {
        text += d.toString()
        const m = text.match(/Join code: (\S+)/)
        if (m) resolve(m[1]!)
      })
      void finishedSending.then(() => reject(new Error("sender exited before printing a code")))
    })
    const received = await recv(code, ["-y", "--out", out])
    const sent = await finishedSending
    expect(sent.stderr).toContain("Sending file: report.pdf (1 file, 2.3 MB) — TTL: 5m")
    expect(sent.stderr).toMatch(/Creating transfer...\nJoin code: \S+\nWaiting for receiver.../)
    expect(sent.code).toBe(0)
    expect(received.stderr).toContain("Joining transfer...\nReceiving: report.pdf (2.3 MB)")
    expect(received.stderr).toContain("[====================] 100% — SHA-256 verified")
    expect(await snapshot(out)).toEqual(new Map([["report.pdf", (await snapshot(root)).get("report.pdf")]]))
  })

  it("refuses to overwrite without --overwrite, leaving the existing file untouched", async () => {
    const root = await tempDir()
    const file = path.join(root, "notes.txt")
    await fs.writeFile(file, "from the sender")
    const out = path.join(root, "out")
    await fs.mkdir(out)
    await fs.writeFile(path.join(out, "notes.txt"), "precious local copy")

    const refused = await startSend([file])
    const received = await recv(refused.code, ["-y", "--out", out])
    expect(received.code).toBe(7)
    expect(received.stderr).toContain("notes.txt")
    expect(received.stderr).toContain("--overwrite")
    expect((await refused.finished).code).toBe(5)
    expect(await fs.readFile(path.join(out, "notes.txt"), "utf8")).toBe("precious local copy")
    expect(await fs.readdir(out)).toEqual(["notes.txt"])

    const allowed = await startSend([file])
    expect((await recv(allowed.code, ["-y", "--overwrite", "--out", out])).code).toBe(0)
    expect((await allowed.finished).code).toBe(0)
    expect(await fs.readFile(path.join(out, "notes.txt"), "utf8")).toBe("from the sender")
  })

  it.each([1, 63])("moves data with --chunk-size %i", async (kib) => {
    const root = await tempDir()
    const file = path.join(root, "data.bin")
    await fs.writeFile(file, randomBytes(300_000))
    const sender = await startSend(["--chunk-size", String(kib), file])
    const out = path.join(root, "out")
    expect((await recv(sender.code, ["-y", "-q", "--out", out])).code).toBe(0)
    expect((await sender.finished).code).toBe(0)
    expect((await snapshot(out)).get("data.bin")).toBe((await snapshot(root)).get("data.bin"))
  })

  it("refuses --chunk-size 64 with a usage error", async () => {
    const root = await tempDir()
    const file = path.join(root, "data.bin")
    await fs.writeFile(file, "x")
    const result = await run(p2pal, ["send", ...common(), "--chunk-size", "64", file])
    expect(result.code).toBe(2)
    expect(result.stderr).toContain("--chunk-size must be between 1 and 63 KiB")
    expect(result.stdout).toBe("")
  })

  it.each([
    { flags: ["--max-retries", "21"], says: "--max-retries must be between 0 and 20 (got 21)" },
    { flags: ["--retry-backoff", "soon"], says: "--retry-backoff soon is not a duration like 1s or 500ms" },
  ])("refuses $flags with a usage error, on send and recv alike", async ({ flags, says }) => {
    const root = await tempDir()
    const file = path.join(root, "data.bin")
    await fs.writeFile(file, "x")
    for (const args of [
      ["send", ...flags, file],
      ["recv", ...flags, "zebra-luna-47"],
    ]) {
      const result = await run(p2pal, [...args.slice(0, 1), ...common(), ...args.slice(1)])
      expect({ code: result.code, stdout: result.stdout }).toEqual({ code: 2, stdout: "" })
      expect(result.stderr).toContain(says)
    }
  })

  it("declines when the receiver answers no: nothing written, both sides say so", async () => {
    const root = await tempDir()
    const file = path.join(root, "offer.txt")
    await fs.writeFile(file, "maybe")
    const out = path.join(root, "out")
    const sender = await startSend([file])
    const received = await recv(sender.code, ["--out", out], "n\n")
    expect(received.code).toBe(8)
    expect(received.stderr).toContain("[y/N]")
    const sent = await sender.finished
    expect(sent.code).toBe(5)
    expect(sent.stderr).toContain("declined")
    await expect(fs.readdir(out)).rejects.toThrow()
  })
})

describe("codes and servers that do not work", () => {
  it("rejects an unknown nameplate with exit code 3 and writes nothing", async () => {
    const root = await tempDir()
    const result = await recv("zebra-luna-9999", ["-y", "--out", root])
    expect(result.code).toBe(3)
    expect(result.stderr).toContain("no transfer has that code")
    expect(await fs.readdir(root)).toEqual([])
  })

  it("rejects a malformed code as a usage error", async () => {
    const result = await recv("not a code", ["-y"])
    expect(result.code).toBe(2)
    expect(result.stderr).toContain("join code")
  })

  it("lets only the first receiver claim a code, even while that one is still at its prompt", async () => {
    const root = await tempDir()
    const file = path.join(root, "once.txt")
    await fs.writeFile(file, "only once")
    const sender = await startSend([file])
    const firstOut = path.join(root, "first")
    // No -y: the first receiver has claimed the code and waits at its prompt until we answer.
    const first = start(p2pal, ["recv", ...common(), "--out", firstOut, sender.code], { keepStdinOpen: true })
    await stderrMatch(first, /\[y\/N\] $/)

    const secondOut = path.join(root, "second")
    const second = await recv(sender.code, ["-y", "-q", "--out", secondOut])
    expect(second.code).toBe(3)
    expect(second.stderr).toContain("already used by a receiver")
    await expect(fs.readdir(secondOut)).rejects.toThrow()

    first.child.stdin!.end("y\n")
    const received = await first.finished
    expect(received.code).toBe(0)
    expect(received.stderr).toContain("100% — SHA-256 verified")
    expect((await sender.finished).code).toBe(0)
    expect(await snapshot(firstOut)).toEqual(new Map([["once.txt", (await snapshot(root)).get("once.txt")]]))
  })

  it("expires a code after --ttl: the sender gives up and a late receiver is refused", async () => {
    const root = await tempDir()
    const file = path.join(root, "late.txt")
    await fs.writeFile(file, "too late")
    const sender = await startSend(["--ttl", "1s", file])
    const sent = await sender.finished
    expect(sent.code).toBe(3)
    expect(sent.stderr).toContain("expired")
    const result = await recv(sender.code, ["-y", "--out", path.join(root, "out")])
    expect(result.code).toBe(3)
    await expect(fs.readdir(path.join(root, "out"))).rejects.toThrow()
  })

  it("reports a signal server that is down with exit code 4, on both sides", async () => {
    const root = await tempDir()
    const file = path.join(root, "a.txt")
    await fs.writeFile(file, "a")
    const port = await closedPort()
    const down = ["--server", `http://127.0.0.1:${port}`, "--stun", ""]
    const sent = await run(p2pal, ["send", ...down, file])
    const received = await run(p2pal, [
      "recv",
      ...down,
      "-y",
      "--out",
      path.join(root, "out"),
      "zebra-luna-42",
    ])
    for (const r of [sent, received]) {
      expect(r.code).toBe(4)
      expect(r.stderr).toContain(`cannot reach the signal server at http://127.0.0.1:${port}`)
      expect(r.stderr).toContain("ECONNREFUSED")
    }
    await expect(fs.readdir(path.join(root, "out"))).rejects.toThrow()
  })
})
