/** Transforms nest: each active one gets a level one above the enclosing one. */
let depth = 0;
export function nextLevel(): number {
  return ++depth;
}
export function releaseLevel(level: number): void {
  if (level !== depth) throw new Error(`transform levels released out of order (${level} vs ${depth})`);
  depth--;
}
