/** The bench's one table: rows of metric, both drivers, ratio, target and whether it is met. */

export interface Row {
  metric: string;
  unit: string;
  switchyard: number | null;
  bridge: number | null;
  ratio: number | null;
  target: string;
  /** null when the metric has no target (information only) or could not be measured. */
  met: boolean | null;
  note?: string;
}

function formatNumber(value: number | null): string {
  if (value === null || Number.isNaN(value)) return "-";
  if (Number.isInteger(value)) return String(value);
  const magnitude = Math.abs(value);
  if (magnitude >= 1000) return value.toFixed(0);
  if (magnitude >= 100) return value.toFixed(1);
  if (magnitude >= 1) return value.toFixed(2);
  if (magnitude === 0) return "0";
  return value.toPrecision(2);
}

const metText = (met: boolean | null): string => (met === null ? "-" : met ? "yes" : "NO");

/** Renders rows (plus a header of machine facts) as aligned plain text. */
export function renderTable(rows: readonly Row[], header: Record<string, string>): string {
  const head = ["metric", "unit", "switchyard", "bridge", "ratio", "target", "met"];
  const body = rows.map((row) => [
    row.metric,
    row.unit,
    formatNumber(row.switchyard),
    formatNumber(row.bridge),
    row.ratio === null || Number.isNaN(row.ratio) ? "-" : row.ratio.toFixed(3),
    row.target,
    metText(row.met),
  ]);
  const widths = head.map((title, column) =>
    Math.max(title.length, ...body.map((cells) => (cells[column] ?? "").length)),
  );
  const numeric = new Set([2, 3, 4]);
  const line = (cells: string[]): string =>
    cells
      .map((cell, column) =>
        numeric.has(column) ? cell.padStart(widths[column] ?? 0) : cell.padEnd(widths[column] ?? 0),
      )
      .join("  ")
      .trimEnd();
  const rule = widths.map((width) => "-".repeat(width)).join("  ");
  const facts = Object.entries(header).map(([key, value]) => `${key}: ${value}`);
  const notes = rows
    .filter((row) => row.note !== undefined)
    .map((row) => `  * ${row.metric}: ${row.note}`);
  return [
    ...facts,
    "",
    line(head),
    rule,
    ...body.map(line),
    ...(notes.length > 0 ? ["", "notes:", ...notes] : []),
  ].join("\n");
}
