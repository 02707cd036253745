// What a manifest of N entries costs, in one process (the README's figures under "What the receiver
// refuses"): the sender encodes it and cuts it into ManifestPart frames, the receiver decodes the frames,
// reassembles the bytes, and decodes and checks them (Manifest.decodeManifest: UTF-8, JSON, the schema,
// ManifestPolicy). Run after `npm run build`:
//
//   node --expose-gc bench/manifest-cost.mjs [--entries 100000] [--path-bytes 38]
//
// Entries form folders of 1000 (one dir entry, 999 files), with paths padded to about --path-bytes.
// Heap is what stays reachable after each step (a full GC first), so it is what the receiver holds.
import { Frames, Manifest } from "@p2pal/domain"
import { performance } from "node:perf_hooks"
import { parseArgs } from "node:util"

const { values } = parseArgs({
  options: {
    entries: { type: "string", default: "100000" },
    "path-bytes": { type: "string", default: "38" },
  },
})
const entries = Number(values.entries)
const pad = Math.max(0, Number(values["path-bytes"]) - 38)
const mib = (n) => `${(n / 1048576).toFixed(1)} MiB`
const heap = () => {
  globalThis.gc?.()
  return process.memoryUsage().heapUsed
}
const timed = (f) => {
  const start = performance.now()
  const value = f()
  return [value, Math.round(performance.now() - start)]
}

const base = heap()
const [manifest, buildMs] = timed(() => {
  const list = []
  for (let folder = 0; list.length < entries; folder++) {
    const dir = `project/src/module-${String(folder).padStart(4, "0")}`
    list.push({ _tag: "dir", path: dir })
    for (let i = 1; i < 1000 && list.length < entries; i++)
      list.push({
        _tag: "file",
        path: `${dir}/file-${String(i).padStart(5, "0")}${"x".repeat(pad)}.txt`,
        size: i,
      })
  }
  return { version: 1, entries: list }
})
const [bytes, encodeMs] = timed(() => Manifest.encodeManifest(manifest))
const [frames, framesMs] = timed(() => {
  const out = []
  for (let offset = 0; offset < bytes.length; offset += Frames.MaxChunkBytes) {
    const slice = bytes.subarray(offset, offset + Frames.MaxChunkBytes)
    out.push(Frames.encode({ _tag: "ManifestPart", total: bytes.length, offset, bytes: slice }))
  }
  return out
})
const [received, reassembleMs] = timed(() => {
  const buffer = new Uint8Array(bytes.length)
  for (const message of frames) {
    const frame = Frames.decode(message)
    if (frame._tag === "Left") throw new Error(frame.left.reason)
    buffer.set(frame.right.bytes, frame.right.offset)
  }
  return buffer
})
const beforeDecode = heap()
const [decoded, decodeMs] = timed(() => Manifest.decodeManifest(received))
if (decoded._tag === "Left") throw new Error(decoded.left.message)
const held = heap() - beforeDecode
const avgPath = manifest.entries.reduce((sum, e) => sum + Buffer.byteLength(e.path), 0) / entries

console.log(
  `${entries} entries, paths ${avgPath.toFixed(0)} bytes on average: manifest ${mib(bytes.length)} ` +
    `(${(bytes.length / entries).toFixed(0)} bytes an entry, ${frames.length} frames)`,
)
console.log(
  `  build ${buildMs} ms, encode ${encodeMs} ms, frames out ${framesMs} ms, frames in ${reassembleMs} ms`,
)
console.log(
  `  decode and check ${decodeMs} ms, holding ${mib(held)} more heap; total heap ${mib(heap() - base)}`,
)
console.log(`  process RSS ${mib(process.memoryUsage().rss)}`)
