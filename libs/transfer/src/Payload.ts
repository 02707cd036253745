import { Frames } from "@p2pal/domain"
import { createCipheriv, createDecipheriv } from "node:crypto"

/**
 * `--encrypt`: AES-256-GCM over each chunk's payload, under a key only the two peers derived. The
 * nonce is the chunk's file index and byte offset, which never repeat within a transfer, and it also
 * pins each chunk to its place: moving one elsewhere fails authentication.
 */
const nonce = (file: number, offset: number) => {
  const bytes = Buffer.alloc(12)
  bytes.writeUInt32BE(file, 0)
  bytes.writeBigUInt64BE(BigInt(offset), 4)
  return bytes
}

/** A chunk frame whose payload is the sealed `plaintext`. */
export const sealChunk = (key: Buffer, file: number, offset: number, plaintext: Uint8Array): Uint8Array => {
  const cipher = createCipheriv("aes-256-gcm", key, nonce(file, offset))
  const frame = Buffer.allocUnsafe(Frames.HeaderBytes + plaintext.length + Frames.SealTagBytes)
  const body = cipher.update(plaintext)
  cipher.final()
  body.copy(frame, Frames.HeaderBytes)
  cipher.getAuthTag().copy(frame, Frames.HeaderBytes + plaintext.length)
  return Frames.chunkInto(frame, file, offset)
}

/** The plaintext of a sealed chunk payload, or undefined if it was altered, moved or forged. */
export const openChunk = (
  key: Buffer,
  file: number,
  offset: number,
  sealed: Uint8Array,
): Buffer | undefined => {
  if (sealed.length <= Frames.SealTagBytes) return undefined
  const end = sealed.length - Frames.SealTagBytes
  try {
    const decipher = createDecipheriv("aes-256-gcm", key, nonce(file, offset))
    decipher.setAuthTag(sealed.subarray(end))
    return Buffer.concat([decipher.update(sealed.subarray(0, end)), decipher.final()])
  } catch {
    return undefined
  }
}
