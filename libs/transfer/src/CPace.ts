import { ristretto255, ristretto255_hasher } from "@noble/curves/ed25519.js"
import { bytesToNumberLE } from "@noble/curves/utils.js"
import { createHash, createHmac, randomBytes } from "node:crypto"

/**
 * CPace for ristretto255 with SHA-512 exactly as draft-irtf-cfrg-cpace specifies it (the cipher suite
 * CPACE-RISTR255-SHA512), checked against the draft's test vectors in test/CPace.test.ts. Names follow
 * the draft: PRS (the password), CI (channel identifier), sid (session id), AD (associated data).
 */

const Point = ristretto255.Point

/** A decoded group element, as far as CPace uses one (noble's own class is not exported by name). */
export interface Element {
  multiply(scalar: bigint): Element
  toBytes(): Uint8Array
}

const DSI = Buffer.from("CPaceRistretto255")
/** SHA-512's input block size: the zero padding makes DSI and PRS fill the first block. */
const HashBlockBytes = 128

const sha512 = (...parts: ReadonlyArray<Uint8Array>): Buffer => {
  const hash = createHash("sha512")
  for (const part of parts) hash.update(part)
  return hash.digest()
}

/** The length as LEB128, then the bytes. */
export const prependLen = (data: Uint8Array): Buffer => {
  const length: Array<number> = []
  let rest = data.length
  do {
    length.push(rest >= 128 ? (rest & 0x7f) | 0x80 : rest)
    rest = Math.floor(rest / 128)
  } while (rest > 0)
  return Buffer.concat([Buffer.from(length), data])
}

export const lvCat = (...parts: ReadonlyArray<Uint8Array>): Buffer => Buffer.concat(parts.map(prependLen))

export const generatorString = (prs: Uint8Array, ci: Uint8Array, sid: Uint8Array): Buffer => {
  const zeroPad = Math.max(0, HashBlockBytes - 1 - prependLen(prs).length - prependLen(DSI).length)
  return lvCat(DSI, prs, Buffer.alloc(zeroPad), ci, sid)
}

/** The secret generator: ristretto255's element derivation (RFC 9496) of SHA-512(generator string). */
export const calculateGenerator = (prs: Uint8Array, ci: Uint8Array, sid: Uint8Array): Element =>
  ristretto255_hasher.deriveToCurve!(sha512(generatorString(prs, ci, sid)))

/**
 * The draft's recommended sampling: 32 random bytes with the bits above the group's 252 cleared, read
 * little-endian. Every such value is below the group order; zero is redrawn (it could not be multiplied).
 */
export const sampleScalar = (): bigint => {
  for (;;) {
    const bytes = randomBytes(32)
    bytes[31]! &= 0x0f
    const scalar = bytesToNumberLE(bytes)
    if (scalar !== 0n) return scalar
  }
}

export const scalarMult = (scalar: bigint, generator: Element): Uint8Array =>
  generator.multiply(scalar).toBytes()

/** The encoded identity, G.I: what scalarMultVfy answers for anything unusable. */
export const Identity = Point.ZERO.toBytes()

/** y * decode(X), or the identity when X does not decode to a group element. */
export const scalarMultVfy = (scalar: bigint, encoded: Uint8Array): Uint8Array => {
  try {
    return Point.fromBytes(encoded).multiply(scalar).toBytes()
  } catch {
    return Identity
  }
}

/** Initiator-responder transcript: the roles are fixed, so A's message always comes first. */
export const transcriptIr = (ya: Uint8Array, ada: Uint8Array, yb: Uint8Array, adb: Uint8Array): Buffer =>
  Buffer.concat([lvCat(ya, ada), lvCat(yb, adb)])

/** Symmetric transcript: the lexicographically larger message first, behind "oc". */
export const transcriptOc = (ya: Uint8Array, ada: Uint8Array, yb: Uint8Array, adb: Uint8Array): Buffer => {
  const a = lvCat(ya, ada)
  const b = lvCat(yb, adb)
  return Buffer.concat([Buffer.from("oc"), ...(Buffer.compare(a, b) > 0 ? [a, b] : [b, a])])
}

export const isk = (sid: Uint8Array, k: Uint8Array, transcript: Uint8Array): Buffer =>
  sha512(lvCat(Buffer.concat([DSI, Buffer.from("_ISK")]), sid, k), transcript)

/** The draft's key confirmation: each side MACs the message it sent, under a key derived from ISK. */
export const confirmationTag = (sid: Uint8Array, key: Uint8Array, y: Uint8Array, ad: Uint8Array): Buffer =>
  createHmac("sha512", sha512(Buffer.from("CPaceMac"), sid, key))
    .update(lvCat(y, ad))
    .digest()
