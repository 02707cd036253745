import { createHash } from "node:crypto"

/** SHA-256 of one file, fed in order as its bytes stream past. */
export interface FileHash {
  readonly update: (bytes: Uint8Array) => void
  readonly digest: () => Uint8Array
}

export const start = (): FileHash => {
  const hash = createHash("sha256")
  return { update: (bytes) => void hash.update(bytes), digest: () => new Uint8Array(hash.digest()) }
}

export const equal = (a: Uint8Array, b: Uint8Array) => a.length === b.length && a.every((x, i) => x === b[i])
