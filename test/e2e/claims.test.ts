import { randomBytes } from "node:crypto"
import * as fs from "node:fs/promises"
import * as http from "node:http"
import * as path from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import WebSocket from "ws"
import { bin, run, type Signal, start, startSignal, tempDir, waitFor } from "../support/Processes.js"

const p2pal = bin("p2pal")

/**
 * What an attacker's curl does: one JSON POST, here from `source` (any 127.0.0.x: Linux answers them all
 * on lo), so its address is not the honest clients' 127.0.0.1.
 */
const post = (signal: Signal, route: string, body: unknown, source = "127.0.0.2") =>
  new Promise<{ status: number; retryAfter: string | undefined; body: Record<string, unknown> }>(
    (resolve, reject) => {
      const req = http.request(
        new URL(route, signal.url),
        { method: "POST", localAddress: source, headers: { "content-type": "application/json" } },
        (res) => {
          let text = ""
          res.setEncoding("utf8").on("data", (part: string) => (text += part))
          res.on("end", () =>
            resolve({
              status: res.statusCode ?? 0,
              retryAfter: res.headers["retry-after"],
              body: JSON.parse(text) as Record<string, unknown>,
            }),
          )
        },
      )
      req.on("error", reject)
      req.end(JSON.stringify(body))
    },
  )

const nameplateOf = (code: string) => code.slice(code.lastIndexOf("-") + 1)

/** `p2pal send -q` of one file: each code it offers is a line of its stdout. */
const startSend = async (signal: Signal, file: string) => {
  const sender = start(p2pal, ["send", "-q", "--server", signal.url, "--stun", "", file])
  const [code] = await sender.line(/^[a-z]+-[a-z]+-\d+$/)
  const codes = () => sender.output().stdout.split("\n").filter(Boolean)
  /** The code the sender offers after `previous`, once it printed one. */
  const codeAfter = (previous: string) =>
    waitFor(`a new code after ${previous}`, async () => codes()[codes().indexOf(previous) + 1], 30_000)
  return { ...sender, code: code!, codeAfter }
}

const recv = (signal: Signal, code: string, out: string) =>
  run(p2pal, ["recv", "-y", "--server", signal.url, "--stun", "", "--out", out, code])

const someFile = async () => {
  const dir = await tempDir()
  const file = path.join(dir, "report.bin")
  await fs.writeFile(file, randomBytes(256 * 1024))
  return file
}

describe("a claim made with only the nameplate", () => {
  let signal: Signal
  beforeAll(async () => {
    signal = await startSignal()
  })
  afterAll(() => signal.stop())

  it("is told to the sender, who voids the code and offers a new one the real receiver gets the file with", async () => {
    const file = await someFile()
    const sender = await startSend(signal, file)

    // The attack: the number alone, as `curl -X POST /api/join -d '{"nameplate":"13"}'` sends it.
    const claimed = await post(signal, "/api/join", { nameplate: nameplateOf(sender.code) })
    expect(claimed.status).toBe(200)
    const tooLate = await recv(signal, sender.code, await tempDir())
    expect(tooLate.code).not.toBe(0)
    expect(tooLate.stderr).toMatch(/that code was already used by a receiver; ask the sender for a new one/)

    const fresh = await sender.codeAfter(sender.code)
    expect(sender.output().stderr).toMatch(
      /someone claimed the code, but no receiver connected within 10s of claiming it: they may know only its number\. That code is void; the receiver uses this new one:/,
    )
    // Whoever still holds the old code hears that it is dead (the signal app answers it as expired).
    const old = await recv(signal, sender.code, await tempDir())
    expect(old.stderr).toMatch(/the code has expired; ask the sender/)

    const out = await tempDir()
    const received = await recv(signal, fresh, out)
    expect(received.code).toBe(0)
    expect((await sender.finished).code).toBe(0)
    expect(await fs.readFile(path.join(out, "report.bin"))).toEqual(await fs.readFile(file))
  })

  it("that also opens the socket and leaves before the code exchange gets a new code at once", async () => {
    const file = await someFile()
    const sender = await startSend(signal, file)
    const claimed = await post(signal, "/api/join", { nameplate: nameplateOf(sender.code) })
    const url = new URL("/api/ws", signal.url)
    url.protocol = "ws:"
    url.searchParams.set("token", String(claimed.body["token"]))
    const socket = new WebSocket(url, { localAddress: "127.0.0.2" })
    await new Promise((resolve, reject) => socket.once("open", resolve).once("error", reject))
    socket.close()

    const began = Date.now()
    const fresh = await sender.codeAfter(sender.code)
    // Told when the claimer left, not after the 10 s a silent one is given.
    expect(Date.now() - began).toBeLessThan(5_000)
    expect(sender.output().stderr).toMatch(
      /someone claimed the code, but the peer left \(peer disconnected\)/,
    )
    const out = await tempDir()
    expect((await recv(signal, fresh, out)).code).toBe(0)
    expect((await sender.finished).code).toBe(0)
    expect(await fs.readFile(path.join(out, "report.bin"))).toEqual(await fs.readFile(file))
  })
})

describe("an address probing nameplates", () => {
  let signal: Signal
  beforeAll(async () => {
    signal = await startSignal(["--limit-failed-joins", "5", "--limit-window", "1 minute"])
  })
  afterAll(() => signal.stop())

  it("is refused with 429 and Retry-After after --limit-failed-joins misses, and the waiting transfer is untouched", async () => {
    const file = await someFile()
    const sender = await startSend(signal, file)
    const target = nameplateOf(sender.code)
    // Every other two-digit nameplate first, as a sweep that has not reached the sender's yet.
    const sweep = [...Array(90).keys()].map((i) => String(i + 10)).filter((n) => n !== target)
    const answers: Array<{ status: number; retryAfter: string | undefined }> = []
    for (const nameplate of sweep.slice(0, 8)) answers.push(await post(signal, "/api/join", { nameplate }))
    expect(answers.slice(0, 5).map((a) => a.status)).toEqual([404, 404, 404, 404, 404])
    for (const refused of answers.slice(5)) {
      expect(refused.status).toBe(429)
      expect(Number(refused.retryAfter)).toBeGreaterThanOrEqual(1)
      expect(Number(refused.retryAfter)).toBeLessThanOrEqual(60)
    }
    // Even the right number is refused now, without claiming the transfer.
    const hit = await post(signal, "/api/join", { nameplate: target })
    expect(hit.status).toBe(429)
    expect(hit.body["message"]).toMatch(/too many failed joins from this address: retry in \d+ s/)

    const out = await tempDir()
    expect((await recv(signal, sender.code, out)).code).toBe(0)
    const sent = await sender.finished
    expect(sent.code).toBe(0)
    expect(sent.stderr).not.toMatch(/claimed/)
    expect(await fs.readFile(path.join(out, "report.bin"))).toEqual(await fs.readFile(file))
  })
})
