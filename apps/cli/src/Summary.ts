import { Manifest } from "@p2pal/domain"
import { escapeForDisplay } from "@p2pal/domain/ManifestPolicy"
import * as Format from "./Format.js"

/** Manifests up to this many entries are listed whole; a longer one is summarised unless --list-all. */
export const ListedEntries = 20
/** How many entries, then how many top folders, a summary names. */
const Shown = 10

const line = (entry: Manifest.Entry) =>
  entry._tag === "file"
    ? `  ${escapeForDisplay(entry.path)}  ${Format.bytes(entry.size)}`
    : `  ${escapeForDisplay(entry.path)}/`

interface Group {
  files: number
  bytes: number
}

/** Files and bytes under each top folder, in the manifest's order; files at the top count under "". */
const byTopFolder = (entries: ReadonlyArray<Manifest.Entry>) => {
  const groups = new Map<string, Group>()
  for (const entry of entries) {
    const slash = entry.path.indexOf("/")
    const top = slash >= 0 ? entry.path.slice(0, slash) : entry._tag === "dir" ? entry.path : ""
    const group = groups.get(top) ?? { files: 0, bytes: 0 }
    groups.set(top, group)
    if (entry._tag === "file") {
      group.files++
      group.bytes += entry.size
    }
  }
  return groups
}

const groupLine = (top: string, { files, bytes }: Group) =>
  `  ${top === "" ? "(top level)" : `${escapeForDisplay(top)}/`}  ${Format.count(files, "file")}, ${Format.bytes(bytes)}`

/**
 * What the receiver is asked to accept, names escaped. The whole manifest, so nothing hides behind a
 * count, unless it is longer than ListedEntries and `all` is off: then its first entries, the files and
 * bytes under each top folder, and the total, so a huge tree does not scroll the question away.
 */
export const describeManifest = (manifest: Manifest.Manifest, all: boolean): ReadonlyArray<string> => {
  const { entries } = manifest
  const files = entries.filter((e) => e._tag === "file")
  // A pipe's size is known only at its end.
  const total =
    manifest.stream === "pipe" ? "a pipe: size unknown" : Format.bytes(Manifest.totalBytes(manifest))
  const sealed =
    manifest.encryption === undefined ? [] : ["Chunks are sealed with AES-256-GCM on top of DTLS."]
  if (entries.length === 1 && files.length === 1)
    return [`Receiving: ${escapeForDisplay(files[0]!.path)} (${total})`, ...sealed]
  const heading = `Receiving ${Format.count(files.length, "file")} (${total}):`
  if (all || entries.length <= ListedEntries) return [...sealed, heading, ...entries.map(line)]
  const groups = [...byTopFolder(entries)]
  return [
    ...sealed,
    heading,
    ...entries.slice(0, Shown).map(line),
    `  ... and ${entries.length - Shown} more (--list-all shows every one)`,
    "By top folder:",
    ...groups.slice(0, Shown).map(([top, group]) => groupLine(top, group)),
    ...(groups.length > Shown ? [`  ... and ${groups.length - Shown} more top folders`] : []),
    `Total: ${Format.count(files.length, "file")}, ${total}`,
  ]
}
