import { describe, expect, it } from "@effect/vitest"
import { Duration, Either } from "effect"
import {
  type Checkpoint,
  decodeJournalHead,
  decodeJson,
  decodeUpdateJson,
  DefaultTtl,
  encodeJournalHead,
  encodeJson,
  encodeUpdateJson,
  isExpired,
  progress,
  replay,
  type Update,
} from "../src/Checkpoint.js"
import type { TransferId } from "../src/Ids.js"
import type { Manifest } from "../src/Manifest.js"

const encoder = new TextEncoder()
const transferId = "tr_0123456789abcdef" as TransferId
const createdAt = 1_700_000_000_000

/** Two files (10 and 0 bytes) around a directory, so file indices are 0 and 2. */
const manifest: Manifest = {
  version: 1,
  entries: [
    { _tag: "file", path: "docs/a.txt", size: 10 },
    { _tag: "dir", path: "empty" },
    { _tag: "file", path: "b.bin", size: 0 },
  ],
}

const common = {
  version: 1 as const,
  transferId,
  createdAt,
  updatedAt: createdAt + 5_000,
  expiresAt: createdAt + Duration.toMillis(DefaultTtl),
  manifest,
}

const sending: Checkpoint = {
  ...common,
  direction: "send",
  files: [
    { index: 0, source: "/home/me/docs/a.txt", mtimeMs: 1_699_999_999_123.456, acked: 4 },
    { index: 2, source: "/home/me/b.bin", mtimeMs: 1_699_999_999_000, acked: 0 },
  ],
}

const receiving: Checkpoint = {
  ...common,
  direction: "recv",
  out: "/home/you/Downloads",
  files: [
    { index: 0, temp: ".a.txt.0a1b2c3d.p2pal-part", durable: 10, verified: true },
    { index: 2, durable: 0, verified: false },
  ],
}

/** The JSON a checkpoint file would hold, with `change` applied to it: what a damaged or edited file looks like. */
const edited = (c: Checkpoint, change: (json: any) => void): Uint8Array => {
  const json = JSON.parse(new TextDecoder().decode(encodeJson(c)))
  change(json)
  return encoder.encode(JSON.stringify(json))
}

const refusal = (bytes: Uint8Array) =>
  Either.match(decodeJson(bytes), { onLeft: (detail) => detail, onRight: () => "accepted" })

describe("Checkpoint", () => {
  it("round-trips both directions through its JSON", () => {
    for (const c of [sending, receiving]) expect(decodeJson(encodeJson(c))).toEqual(Either.right(c))
  })

  it("holds nothing but the schema's fields", () => {
    const json = JSON.parse(new TextDecoder().decode(encodeJson(sending)))
    expect(Object.keys(json).sort()).toEqual(
      [
        "createdAt",
        "direction",
        "expiresAt",
        "files",
        "manifest",
        "transferId",
        "updatedAt",
        "version",
      ].sort(),
    )
  })

  it("counts progress: acknowledged bytes when sending, durable bytes and verified files when receiving", () => {
    // The empty file has nothing left to acknowledge; the receiver has not verified it yet.
    expect(progress(sending)).toEqual({ bytesDone: 4, bytesTotal: 10, filesDone: 1, filesTotal: 2 })
    expect(progress(receiving)).toEqual({ bytesDone: 10, bytesTotal: 10, filesDone: 1, filesTotal: 2 })
  })

  it("expires at expiresAt, not a millisecond before", () => {
    expect(isExpired(sending, sending.expiresAt - 1)).toBe(false)
    expect(isExpired(sending, sending.expiresAt)).toBe(true)
  })

  it("keeps the product sheet's default TTL of 168 hours", () => {
    expect(Duration.toHours(DefaultTtl)).toBe(168)
  })

  const hostile: ReadonlyArray<[string, Checkpoint, (json: any) => void, RegExp]> = [
    ["a newer version", sending, (j) => (j.version = 2), /at version/],
    ["a malformed transfer id", sending, (j) => (j.transferId = "../../etc"), /at transferId/],
    ["an unknown direction", sending, (j) => (j.direction = "both"), /direction/],
    ["a negative file size", sending, (j) => (j.manifest.entries[0].size = -1), /at manifest.entries.0/],
    ["a negative acked count", sending, (j) => (j.files[0].acked = -1), /at files.0.acked/],
    ["a fractional byte count", receiving, (j) => (j.files[0].durable = 1.5), /at files.0.durable/],
    ["more bytes acked than the file has", sending, (j) => (j.files[0].acked = 11), /at files.0: counts 11/],
    ["more durable bytes than the file has", receiving, (j) => (j.files[0].durable = 11), /at files.0/],
    [
      "a file verified before all bytes were durable",
      receiving,
      (j) => (j.files[0].durable = 9),
      /at files.0/,
    ],
    ["a manifest path with ..", receiving, (j) => (j.manifest.entries[0].path = "../a.txt"), /at manifest: /],
    [
      "an absolute manifest path",
      sending,
      (j) => (j.manifest.entries[2].path = "/etc/passwd"),
      /at manifest: /,
    ],
    [
      "a source path with ..",
      sending,
      (j) => (j.files[0].source = "/home/me/../../etc/shadow"),
      /at files.0.source/,
    ],
    ["a relative source path", sending, (j) => (j.files[0].source = "docs/a.txt"), /at files.0.source/],
    ["an out directory with ..", receiving, (j) => (j.out = "/home/you/.."), /at out/],
    ["a temp name with a slash", receiving, (j) => (j.files[0].temp = "../../.bashrc"), /at files.0.temp/],
    ["a temp name of ..", receiving, (j) => (j.files[1].temp = ".."), /at files.1.temp/],
    ["a file index pointing at a directory", sending, (j) => (j.files[1].index = 1), /at files: /],
    ["a file of the manifest left out", receiving, (j) => j.files.pop(), /at files: /],
    ["updatedAt before createdAt", sending, (j) => (j.updatedAt = createdAt - 1), /at updatedAt/],
    ["a property outside the schema", sending, (j) => (j.joinCode = "zebra-luna-47"), /joinCode/],
    ["recv fields on a send checkpoint", sending, (j) => (j.out = "/tmp"), /out/],
  ]
  for (const [what, c, change, detail] of hostile)
    it(`refuses ${what}`, () => {
      expect(refusal(edited(c, change))).toMatch(detail)
    })

  it("refuses bytes that are not JSON: cut short, garbage or invalid UTF-8", () => {
    const whole = encodeJson(receiving)
    expect(refusal(whole.subarray(0, whole.length - 7))).toBe("not valid JSON")
    expect(refusal(encoder.encode("{garbage"))).toBe("not valid JSON")
    expect(refusal(new Uint8Array([0x7b, 0xff, 0x7d]))).toBe("not valid JSON")
  })

  it("will not encode a checkpoint that breaks its own rules", () => {
    expect(() => encodeJson({ ...sending, files: sending.files.slice(1) })).toThrow()
  })
})

describe("Checkpoint journal updates", () => {
  const times = { updatedAt: createdAt + 9_000, expiresAt: createdAt + 9_000 + Duration.toMillis(DefaultTtl) }
  const acked: Update = { direction: "send", ...times, files: [{ index: 0, acked: 10 }] }
  const started: Update = {
    direction: "recv",
    ...times,
    files: [{ index: 2, temp: ".b.bin.00000000.p2pal-part", durable: 0, verified: false }],
  }
  const lineOf = (json: unknown) => encoder.encode(JSON.stringify(json))
  const refused = (base: Checkpoint, json: unknown) =>
    Either.match(decodeUpdateJson(base, lineOf(json)), {
      onLeft: (detail) => detail,
      onRight: () => "accepted",
    })

  it("round-trip as one line of JSON, and replay over the checkpoint they follow", () => {
    const line = encodeUpdateJson(sending, acked)
    expect(new TextDecoder().decode(line)).not.toContain("\n")
    expect(decodeUpdateJson(sending, line)).toEqual(Either.right(acked))
    expect(replay(sending, [acked])).toEqual({
      ...sending,
      ...times,
      files: [{ ...sending.files[0], acked: 10 }, sending.files[1]],
    })
    expect(replay(receiving, [started])).toEqual({
      ...receiving,
      ...times,
      files: [receiving.files[0], started.files[0]],
    })
    expect(replay(receiving, [])).toBe(receiving)
  })

  const hostile: ReadonlyArray<[string, Checkpoint, unknown, RegExp]> = [
    [
      "an index past the manifest",
      sending,
      { ...acked, files: [{ index: 3, acked: 0 }] },
      /names entry 3, not a file/,
    ],
    [
      "an index naming a directory",
      receiving,
      { ...started, files: [{ ...started.files[0], index: 1 }] },
      /names entry 1/,
    ],
    [
      "more bytes acked than the file has",
      sending,
      { ...acked, files: [{ index: 0, acked: 11 }] },
      /counts 11 bytes done of a 10-byte file/,
    ],
    [
      "verified before every byte",
      receiving,
      { ...started, files: [{ index: 0, durable: 9, verified: true }] },
      /counts 9 bytes done and complete/,
    ],
    ["a recv update to a send checkpoint", sending, started, /holds a recv update to a send checkpoint/],
    [
      "updatedAt before createdAt",
      sending,
      { ...acked, updatedAt: createdAt - 1 },
      /updatedAt before createdAt/,
    ],
    ["a property outside the schema", sending, { ...acked, source: "/etc/shadow" }, /not a valid update/],
    [
      "a temp name with a slash",
      receiving,
      { ...started, files: [{ ...started.files[0], temp: "../x" }] },
      /not a valid update at files.0.temp/,
    ],
  ]
  for (const [what, base, json, detail] of hostile)
    it(`refuses ${what}`, () => {
      expect(refused(base, json)).toMatch(detail)
    })

  it("will not encode an update that breaks the rules", () => {
    expect(() => encodeUpdateJson(sending, { ...acked, files: [{ index: 1, acked: 0 }] })).toThrow()
  })

  it("a journal's head names a SHA-256, and nothing else", () => {
    const hash = "ab".repeat(32)
    expect(decodeJournalHead(encodeJournalHead(hash))).toEqual(Either.right(hash))
    expect(Either.isLeft(decodeJournalHead(lineOf({ base: "ab" })))).toBe(true)
    expect(Either.isLeft(decodeJournalHead(encoder.encode('{"base":')))).toBe(true)
  })
})
