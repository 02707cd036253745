import { writeFile } from "node:fs/promises"
import * as path from "node:path"
import { afterEach, describe, expect, it } from "vitest"
import { bin, removeTempDirs, run, tempDir } from "../../../test/support/Processes.js"
import { createTransfer, type Signal, startSignal } from "./harness.js"

const running: Array<Signal> = []
afterEach(async () => {
  await Promise.all(running.splice(0).map((signal) => signal.stop()))
  await removeTempDirs()
})

const start = async (args: ReadonlyArray<string>) => {
  const signal = await startSignal(args)
  running.push(signal)
  return signal
}

const postFrom = async (signal: Signal, path: string, body: unknown, forwardedFor?: string) => {
  const response = await fetch(new URL(path, signal.url), {
    method: "POST",
    body: JSON.stringify(body),
    headers: forwardedFor === undefined ? {} : { "x-forwarded-for": forwardedFor },
  })
  return {
    status: response.status,
    retryAfter: response.headers.get("retry-after"),
    body: (await response.json()) as Record<string, unknown>,
  }
}

const create = (signal: Signal, forwardedFor?: string) =>
  postFrom(signal, "/api/transfer", { ttlSeconds: 60 }, forwardedFor)
const join = (signal: Signal, nameplate: string) => postFrom(signal, "/api/join", { nameplate })

/** Asserts a 429 as the API documents it and waits the Retry-After it gave. */
const refusedThenWait = async (response: Awaited<ReturnType<typeof postFrom>>, maxSeconds: number) => {
  expect(response.status).toBe(429)
  expect(response.body).toEqual({
    error: "rate_limited",
    message: expect.stringMatching(/ from this address: retry in [0-9]+ s$/),
  })
  expect(response.retryAfter).toMatch(/^[0-9]+$/)
  const seconds = Number(response.retryAfter)
  expect(seconds).toBeGreaterThanOrEqual(1)
  expect(seconds).toBeLessThanOrEqual(maxSeconds)
  await new Promise((resolve) => setTimeout(resolve, seconds * 1000))
}

describe("p2pal-signal rate limits", () => {
  it("refuses creates past --limit-creates with 429 and Retry-After, and takes them again after it", async () => {
    const signal = await start(["--limit-creates", "3", "--limit-window", "2 seconds"])
    for (let i = 0; i < 3; i++) expect((await create(signal)).status).toBe(201)
    await refusedThenWait(await create(signal), 2)
    expect((await create(signal)).status).toBe(201)
  })

  it("refuses joins past --limit-joins, whatever their outcome", async () => {
    const signal = await start(["--limit-joins", "2"])
    const created = await createTransfer(signal)
    expect((await join(signal, "987650")).status).toBe(404)
    expect((await join(signal, created.nameplate)).status).toBe(200)
    const refused = await join(signal, created.nameplate)
    expect(refused.status).toBe(429)
    expect(refused.body["message"]).toMatch(/^too many joins /)
  })

  it("after --limit-failed-joins failures refuses even a real nameplate, without claiming it", async () => {
    const signal = await start(["--limit-failed-joins", "3", "--limit-window", "2 seconds"])
    const claimed = await createTransfer(signal)
    const target = await createTransfer(signal)
    expect((await join(signal, claimed.nameplate)).status).toBe(200)
    expect((await join(signal, claimed.nameplate)).status).toBe(409)
    expect((await join(signal, "987650")).status).toBe(404)
    expect((await join(signal, "987651")).status).toBe(404)
    const refused = await join(signal, target.nameplate)
    expect(refused.body["message"]).toMatch(/^too many failed joins /)
    await refusedThenWait(refused, 2)
    // The refused join never reached the store: the code is still there to claim.
    expect((await join(signal, target.nameplate)).status).toBe(200)
  })

  it("with --trust-proxy counts each client by the last X-Forwarded-For address (IPv6 by /64)", async () => {
    const signal = await start(["--trust-proxy", "--limit-creates", "1"])
    expect((await create(signal, "203.0.113.1")).status).toBe(201)
    expect((await create(signal, "203.0.113.1")).status).toBe(429)
    // Whatever the client puts first, the proxy's entry is last.
    expect((await create(signal, "198.51.100.77, 203.0.113.1")).status).toBe(429)
    expect((await create(signal, "203.0.113.2")).status).toBe(201)
    expect((await create(signal, "::ffff:203.0.113.2")).status).toBe(429)
    expect((await create(signal, "2001:db8:1:2::1")).status).toBe(201)
    expect((await create(signal, "2001:db8:1:2:aaaa::9")).status).toBe(429)
    expect((await create(signal, "2001:db8:1:3::1")).status).toBe(201)
  })

  it("without --trust-proxy ignores X-Forwarded-For: a made-up address gets no new allowance", async () => {
    const signal = await start(["--limit-creates", "1"])
    expect((await create(signal, "203.0.113.1")).status).toBe(201)
    expect((await create(signal, "203.0.113.2")).status).toBe(429)
    expect((await create(signal)).status).toBe(429)
  })

  it("makes p2pal send say the server is rate-limiting this address and when to retry", async () => {
    const signal = await start(["--limit-creates", "1"])
    expect((await create(signal)).status).toBe(201)
    const file = path.join(await tempDir(), "a.txt")
    await writeFile(file, "hello")
    const sent = await run(bin("p2pal"), ["send", "--server", signal.url, "--stun", "", file])
    expect(sent.code).toBe(4)
    expect(sent.stderr).toMatch(/the signal server is rate-limiting this address: retry in [0-9]+ s/)
  })
})
