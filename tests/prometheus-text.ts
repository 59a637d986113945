// A strict reader of the Prometheus text exposition format 0.0.4, for tests: every line is a HELP, a
// TYPE or a sample; a sample's family has a TYPE; label values are quoted and escaped; values are
// numbers (or NaN, +Inf, -Inf); histogram buckets are cumulative and end with le="+Inf" equal to _count.
// Throws with the line number on anything else.

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

export interface Family {
  name: string;
  type: string;
  help: string;
  samples: Sample[];
}

const namePattern = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;

function parseValue(text: string, lineNumber: number): number {
  if (text === "NaN") return NaN;
  if (text === "+Inf") return Infinity;
  if (text === "-Inf") return -Infinity;
  if (!/^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(text)) throw new Error(`line ${lineNumber}: "${text}" is not a number`);
  return Number(text);
}

function parseLabels(text: string, lineNumber: number): Record<string, string> {
  const labels: Record<string, string> = {};
  let rest = text;
  while (rest.length > 0) {
    const match = /^([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"(,?)/.exec(rest);
    if (!match) throw new Error(`line ${lineNumber}: bad labels at "${rest}"`);
    if (labels[match[1]!] !== undefined) throw new Error(`line ${lineNumber}: label ${match[1]} twice`);
    labels[match[1]!] = match[2]!.replace(/\\n/g, "\n").replace(/\\"/g, '"').replace(/\\\\/g, "\\");
    rest = rest.slice(match[0].length);
    if (match[3] === "" && rest.length > 0) throw new Error(`line ${lineNumber}: missing comma in labels`);
  }
  return labels;
}

export function parsePrometheusText(text: string): Map<string, Family> {
  const families = new Map<string, Family>();
  const familyOf = (sampleName: string): Family | undefined => {
    for (const suffix of ["", "_bucket", "_sum", "_count"]) {
      if (suffix !== "" && !sampleName.endsWith(suffix)) continue;
      const family = families.get(sampleName.slice(0, sampleName.length - suffix.length));
      if (family && (suffix === "" || family.type === "histogram" || family.type === "summary")) return family;
    }
    return undefined;
  };
  if (!text.endsWith("\n")) throw new Error("the exposition does not end with a newline");
  text.split("\n").forEach((line, index) => {
    const lineNumber = index + 1;
    if (line === "") return;
    if (line.startsWith("#")) {
      const match = /^# (HELP|TYPE) (\S+) ?(.*)$/.exec(line);
      if (!match) return; // other comments are allowed
      const [, kind, name, rest] = match;
      if (!namePattern.test(name!)) throw new Error(`line ${lineNumber}: bad metric name ${name}`);
      const family = families.get(name!) ?? { name: name!, type: "untyped", help: "", samples: [] };
      if (kind === "TYPE") {
        if (!["counter", "gauge", "histogram", "summary", "untyped"].includes(rest!)) throw new Error(`line ${lineNumber}: bad type ${rest}`);
        if (family.samples.length > 0) throw new Error(`line ${lineNumber}: TYPE after samples of ${name}`);
        family.type = rest!;
      } else family.help = rest!;
      families.set(name!, family);
      return;
    }
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)(?: (-?\d+))?$/.exec(line);
    if (!match) throw new Error(`line ${lineNumber}: not a sample: ${line}`);
    const family = familyOf(match[1]!);
    if (!family) throw new Error(`line ${lineNumber}: sample ${match[1]} has no TYPE`);
    family.samples.push({ name: match[1]!, labels: parseLabels(match[2] ?? "", lineNumber), value: parseValue(match[3]!, lineNumber) });
  });
  for (const family of families.values()) {
    if (family.type === "counter") for (const sample of family.samples) if (!(sample.value >= 0)) throw new Error(`counter ${sample.name} is ${sample.value}`);
    if (family.type !== "histogram") continue;
    const series = new Map<string, Sample[]>();
    for (const sample of family.samples) {
      const { le: _le, ...rest } = sample.labels;
      const key = JSON.stringify(Object.entries(rest).sort());
      series.set(key, [...(series.get(key) ?? []), sample]);
    }
    for (const samples of series.values()) {
      const buckets = samples.filter((s) => s.name.endsWith("_bucket"));
      const count = samples.find((s) => s.name.endsWith("_count"));
      if (buckets.length === 0 || count === undefined || !samples.some((s) => s.name.endsWith("_sum"))) throw new Error(`histogram ${family.name} lacks buckets, _sum or _count`);
      for (let index = 1; index < buckets.length; index++) {
        if (buckets[index]!.value < buckets[index - 1]!.value) throw new Error(`histogram ${family.name} buckets are not cumulative`);
        if (Number(buckets[index]!.labels.le) <= Number(buckets[index - 1]!.labels.le) && buckets[index]!.labels.le !== "+Inf") throw new Error(`histogram ${family.name} bounds do not increase`);
      }
      const last = buckets.at(-1)!;
      if (last.labels.le !== "+Inf" || last.value !== count.value) throw new Error(`histogram ${family.name}: le="+Inf" must equal _count`);
    }
  }
  return families;
}

/** The value of the one sample of `family` whose labels include `labels`. */
export function sampleValue(families: Map<string, Family>, name: string, labels: Record<string, string>): number {
  const family = families.get(name.replace(/_(bucket|sum|count)$/, "")) ?? families.get(name);
  const matches = (family?.samples ?? []).filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
  if (matches.length !== 1) throw new Error(`${matches.length} samples of ${name} match ${JSON.stringify(labels)}`);
  return matches[0]!.value;
}
