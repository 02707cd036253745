import { describe, expect, it } from "@effect/vitest"
import { barLines } from "../src/Ui.js"

const file = "[==========          ]  50%"
const total = "[=====               ]  25%  1.2 GB / 4.8 GB"
const bars = (name: string, count = "  1234/10000 files") => ({
  file,
  name,
  total,
  count,
  pace: "12.3 MB/s  ETA 4m50s",
})

describe("barLines", () => {
  it("draws the count on the total bar when the terminal is wide enough, or its width is unknown", () => {
    const expected = [`${file}  src/a.txt`, `${total}  1234/10000 files  12.3 MB/s  ETA 4m50s`]
    expect(barLines(bars("src/a.txt"), 0)).toEqual(expected)
    expect(barLines(bars("src/a.txt"), 120)).toEqual(expected)
  })

  it("on 80 columns moves the count to the file's line and cuts the start of a long name: nothing wraps", () => {
    const name = `node_modules/${"deep/".repeat(20)}index.js`
    const lines = barLines(bars(name), 80)
    expect(lines).toEqual([
      `${file}  1234/10000 files  ...${name.slice(name.length - (79 - file.length - 20 - 3))}`,
      `${total}  12.3 MB/s  ETA 4m50s`,
    ])
    expect(lines.map((l) => l.length)).toEqual([79, total.length + 22])
    expect(lines[0]).toMatch(/\/index\.js$/)
  })

  it("cuts names by code point, never inside a surrogate pair", () => {
    const [line] = barLines(bars("😀".repeat(100), ""), 60)
    expect(line).toBe(`${file}  ...${"😀".repeat(59 - file.length - 5)}`)
    expect(line).not.toMatch(/[\ud800-\udbff](?![\udc00-\udfff])/)
  })

  it("cuts the total bar itself only on a terminal too narrow for it", () => {
    const [, line] = barLines(bars("a", ""), 40)
    expect(line).toBe(`${total}  12.3 MB/s  ETA 4m50s`.slice(0, 39))
  })
})
