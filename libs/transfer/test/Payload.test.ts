import { Frames } from "@p2pal/domain"
import * as Payload from "@p2pal/transfer/Payload"
import { Either } from "effect"
import { randomBytes } from "node:crypto"
import { describe, expect, it } from "vitest"

const key = randomBytes(32)
const plaintext = randomBytes(Frames.MaxChunkBytes)

/** Seals at (file 3, offset 64512) and decodes the frame the way the receiver does. */
const sealed = () => {
  const frame = Either.getOrThrow(Frames.decode(Payload.sealChunk(key, 3, 64512, plaintext)))
  if (frame._tag !== "Chunk") throw new Error(`expected a Chunk, got ${frame._tag}`)
  return frame
}

describe("--encrypt chunk sealing", () => {
  it("a full-size sealed chunk fits a frame and opens to the same bytes", () => {
    const frame = sealed()
    expect(frame.bytes.length).toBe(plaintext.length + Frames.SealTagBytes)
    expect(Buffer.from(frame.bytes).equals(plaintext)).toBe(false)
    expect(Payload.openChunk(key, frame.file, frame.offset, frame.bytes)?.equals(plaintext)).toBe(true)
  })

  it("refuses a changed byte, a chunk moved to another place or file, and the wrong key", () => {
    const frame = sealed()
    const changed = Buffer.from(frame.bytes)
    changed[100]! ^= 1
    expect(Payload.openChunk(key, 3, 64512, changed)).toBeUndefined()
    expect(Payload.openChunk(key, 3, 0, frame.bytes)).toBeUndefined()
    expect(Payload.openChunk(key, 4, 64512, frame.bytes)).toBeUndefined()
    expect(Payload.openChunk(randomBytes(32), 3, 64512, frame.bytes)).toBeUndefined()
    expect(Payload.openChunk(key, 3, 64512, frame.bytes.subarray(0, Frames.SealTagBytes))).toBeUndefined()
  })
})
