import { describe, expect, it } from "@effect/vitest"
import { Either } from "effect"
import * as Rate from "../src/Rate.js"

describe("Rate", () => {
  it.each([
    ["1024", 1024],
    ["100K", 100 * 1024],
    ["100k", 100 * 1024],
    ["10M", 10 * 1024 ** 2],
    ["1.5m", 1.5 * 1024 ** 2],
    ["2G", 2 * 1024 ** 3],
    [" 3M ", 3 * 1024 ** 2],
  ])("reads %s as curl does", (text, bytes) => {
    expect(Rate.parse(text)).toEqual(Either.right(bytes))
  })

  it.each([["fast"], ["10 M"], ["10MB"], ["-1M"], ["1T"], [""], ["M"]])("refuses %s", (text) => {
    expect(Either.getLeft(Rate.parse(text))._tag).toBe("Some")
  })

  it("refuses a cap under 1K, which would starve the heartbeat", () => {
    expect(Rate.parse("1000")).toEqual(Either.left("--limit-rate must be at least 1K (got 1000)"))
  })

  it("shows a rate in the units it was given in", () => {
    expect(Rate.format(10 * 1024 ** 2)).toBe("10 MiB/s")
    expect(Rate.format(1.5 * 1024 ** 2)).toBe("1.5 MiB/s")
    expect(Rate.format(512 * 1024)).toBe("512 KiB/s")
    expect(Rate.format(2 * 1024 ** 3)).toBe("2 GiB/s")
  })
})
