/**
 * mulberry32: a small seeded PRNG, so a test that picks random points (or trees, or faults) can be
 * replayed with the seed it printed. Returns numbers in [0, 1).
 */
export const prng = (seed: number) => () => {
  seed = (seed + 0x6d2b79f5) | 0
  let t = Math.imul(seed ^ (seed >>> 15), 1 | seed)
  t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
  return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296
}
