// What grew between two V8 heap snapshots (written by `npm run bench:signal -- --heap-snapshots DIR`),
// grouped by kind of object: count and bytes (self size) added, per item when given how many items the
// phase added (transfers or sockets), largest first.
//
//   node bench/heap-diff.mjs DIR/memory-1-transfers.heapsnapshot DIR/memory-2-sockets.heapsnapshot [--per 2000] [--top 40]
import { readFileSync } from "node:fs"
import { parseArgs } from "node:util"

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: { per: { type: "string", default: "1" }, top: { type: "string", default: "40" } },
})
if (positionals.length !== 2) {
  process.stderr.write(
    "usage: node bench/heap-diff.mjs BEFORE.heapsnapshot AFTER.heapsnapshot [--per N] [--top N]\n",
  )
  process.exit(2)
}
const per = Number(values.per)
const top = Number(values.top)

/** Self size and count of every group of a snapshot: by node type, and by constructor name for objects. */
function groups(file) {
  const { snapshot, nodes, strings } = JSON.parse(readFileSync(file, "utf8"))
  const fields = snapshot.meta.node_fields
  const types = snapshot.meta.node_types[0]
  const width = fields.length
  const [type, name, size] = ["type", "name", "self_size"].map((field) => fields.indexOf(field))
  const totals = new Map()
  for (let i = 0; i < nodes.length; i += width) {
    const kind = types[nodes[i + type]]
    // Strings and code are grouped by kind only: their names are their contents.
    const key = ["object", "closure", "native"].includes(kind) ? `${kind} ${strings[nodes[i + name]]}` : kind
    const total = totals.get(key) ?? { count: 0, bytes: 0 }
    total.count++
    total.bytes += nodes[i + size]
    totals.set(key, total)
  }
  return totals
}

const before = groups(positionals[0])
const after = groups(positionals[1])
const rows = [...after].map(([key, { count, bytes }]) => {
  const was = before.get(key) ?? { count: 0, bytes: 0 }
  return { key, count: (count - was.count) / per, bytes: (bytes - was.bytes) / per }
})
rows.sort((a, b) => b.bytes - a.bytes)
const sum = rows.reduce((total, row) => total + row.bytes, 0)
console.log(`${sum.toFixed(0)} bytes${per === 1 ? "" : " per item"} in all; largest groups:`)
for (const { key, count, bytes } of rows.slice(0, top)) {
  console.log(`${bytes.toFixed(0).padStart(10)}  ${count.toFixed(1).padStart(8)}  ${key.slice(0, 100)}`)
}
