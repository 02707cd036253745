import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { waitFor } from "../../../test/support/Processes.js"
import { connect, createTransfer, joinTransfer, postJson, type Signal, startSignal } from "./harness.js"

let signal: Signal
beforeAll(async () => {
  signal = await startSignal(["--limit-failed-joins", "1"])
})
afterAll(async () => {
  await signal.stop()
})

const Name = "[a-zA-Z_:][a-zA-Z0-9_:]*"
const Labels = `\\{(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\\\\n]|\\\\[\\\\"n])*",?)*\\}`
const Sample = new RegExp(`^(${Name})(${Labels})? (-?[0-9.e+]+|NaN|[+-]Inf)$`)
const Type = new RegExp(`^# TYPE (${Name}) (counter|gauge|histogram|summary|untyped)$`)
const Help = new RegExp(`^# HELP (${Name}) .*$`)

/**
 * Parses the Prometheus text format strictly enough to catch a malformed scrape: every line is a HELP, a
 * TYPE or a sample of a family whose TYPE came first. Samples are keyed `name{labels}` as written.
 */
const scrape = async () => {
  const response = await fetch(signal.metricsUrl)
  expect(response.status).toBe(200)
  expect(response.headers.get("content-type")).toMatch(/^text\/plain; version=0\.0\.4/)
  const text = await response.text()
  expect(text.endsWith("\n")).toBe(true)
  const types = new Map<string, string>()
  const samples = new Map<string, number>()
  for (const line of text.slice(0, -1).split("\n")) {
    const type = Type.exec(line)
    if (type) {
      expect(types.has(type[1]!), `a second TYPE for ${type[1]}`).toBe(false)
      types.set(type[1]!, type[2]!)
      continue
    }
    if (Help.test(line)) continue
    const sample = Sample.exec(line)
    expect(sample, `not a Prometheus line: ${line}`).not.toBeNull()
    expect(types.has(sample![1]!), `a sample before its TYPE: ${line}`).toBe(true)
    samples.set(`${sample![1]}${sample![2] ?? ""}`, Number(sample![3]))
  }
  return { types, samples }
}

describe("p2pal-signal /metrics", () => {
  it("is served on its own loopback listener (--metrics-port), not on the public API port", async () => {
    expect(new URL(signal.metricsUrl).hostname).toBe("127.0.0.1")
    expect(new URL(signal.metricsUrl).port).not.toBe(new URL(signal.url).port)
    expect((await fetch(new URL("/metrics", signal.url))).status).toBe(404)
    expect((await fetch(new URL("/other", signal.metricsUrl))).status).toBe(404)
  })

  it("counts creates, joins and refusals by kind", async () => {
    const before = await scrape()
    expect(before.types.get("p2pal_transfers_created_total")).toBe("counter")
    expect(before.types.get("p2pal_websockets_active")).toBe("gauge")
    for (const series of [
      "p2pal_transfers_created_total",
      "p2pal_transfers_joined_total",
      "p2pal_transfers_expired_total",
      'p2pal_rate_limited_total{kind="create"}',
      'p2pal_rate_limited_total{kind="join"}',
      'p2pal_rate_limited_total{kind="failed-join"}',
      "p2pal_websockets_active",
      "p2pal_transfers_held",
      'p2pal_refused_total{cap="transfers"}',
      'p2pal_refused_total{cap="websockets"}',
      'p2pal_refused_total{cap="websockets-per-client"}',
    ])
      expect(before.samples.get(series), series).toEqual(expect.any(Number))

    const created = [await createTransfer(signal), await createTransfer(signal), await createTransfer(signal)]
    await joinTransfer(signal, created[0]!.nameplate)
    await joinTransfer(signal, created[1]!.nameplate)
    expect((await postJson(signal, "/api/join", { nameplate: created[1]!.nameplate })).status).toBe(409)
    expect((await postJson(signal, "/api/join", { nameplate: created[2]!.nameplate })).status).toBe(429)

    const after = await scrape()
    const increase = (series: string) => after.samples.get(series)! - before.samples.get(series)!
    expect(increase("p2pal_transfers_created_total")).toBe(3)
    expect(increase("p2pal_transfers_joined_total")).toBe(2)
    expect(increase('p2pal_rate_limited_total{kind="failed-join"}')).toBe(1)
    expect(increase('p2pal_rate_limited_total{kind="join"}')).toBe(0)
  })

  it("shows an open WebSocket as active until it closes", async () => {
    const active = async () => (await scrape()).samples.get("p2pal_websockets_active")
    expect(await active()).toBe(0)
    const client = connect(signal, (await createTransfer(signal)).token)
    await waitFor("the socket to count", async () => ((await active()) === 1 ? true : undefined), 5_000)
    client.ws.close(1000)
    await client.closed()
    await waitFor(
      "the socket to stop counting",
      async () => ((await active()) === 0 ? true : undefined),
      5_000,
    )
  })
})
