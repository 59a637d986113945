// Command-line options of the benchmarks: `--name value` pairs, each with a fallback.

/** The value after `name` in `args`, or `fallback` when the option is absent or has no value. */
export function optionValue(args: readonly string[], name: string, fallback: string): string {
  const index = args.indexOf(name);
  return index >= 0 && args[index + 1] !== undefined ? args[index + 1]! : fallback;
}
