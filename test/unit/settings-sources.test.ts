// Guards against settings drifting apart: DNS_ADDRESS was in src/settings.ts and config.json
// but missing from the README's Settings table. src/settings.ts's SETTINGS is the one list;
// config.json's `env`, the README's table and what readSettings reads must all match it.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, it } from "node:test";
import { readSettings, SETTINGS, UNDECLARED_SETTINGS } from "../../src/settings.ts";

const TIMEOUT = { timeout: 10_000 };

const read = (file: string): string =>
  readFileSync(new URL(`../../${file}`, import.meta.url), "utf8");

interface ManifestEnv {
  name: string;
  description: string;
  value: string;
  settable?: string[];
}

const manifestEnv = (): ManifestEnv[] =>
  (JSON.parse(read("config.json")) as { env: ManifestEnv[] }).env;

/** The README's Settings table: each setting named in a row's first cell, with its default cell. */
function readmeSettings(readme: string): Map<string, string> {
  const start = readme.search(/^## Settings\b/m);
  assert.ok(start >= 0, "README.md has no ## Settings section");
  const section = readme.slice(start).split(/^## /m)[1] ?? "";
  const rows = section
    .split("\n")
    .filter((line) => line.startsWith("|") && !/^\|\s*(setting|---)/.test(line));
  const found = new Map<string, string>();
  for (const row of rows) {
    const cells = row
      .split("|")
      .slice(1, -1)
      .map((cell) => cell.trim());
    const [first = "", , defaultCell = ""] = cells;
    assert.equal(cells.length, 3, `a row of the Settings table does not have 3 cells: ${row}`);
    // Mounts (`state.source` (mount)) are the manifest's mounts, not its env.
    if (first.includes("(mount)")) continue;
    const names = [...first.matchAll(/`([^`]+)`/g)].map((match) => match[1] ?? "");
    assert.ok(names.length > 0, `a row of the Settings table names no setting: ${row}`);
    for (const name of names) {
      assert.ok(!found.has(name), `README's Settings table has ${name} twice`);
      found.set(name, defaultCell);
    }
  }
  return found;
}

const names = (list: Iterable<string>): string[] => [...list].sort();

describe("settings: one source of truth (src/settings.ts SETTINGS)", () => {
  it(
    "config.json's env declares exactly SETTINGS, with the same defaults and descriptions",
    TIMEOUT,
    () => {
      const env = manifestEnv();
      assert.deepEqual(
        env.map((entry) => entry.name),
        SETTINGS.map((setting) => setting.name),
        "config.json's env and SETTINGS differ (names or order)",
      );
      for (const setting of SETTINGS) {
        const entry = env.find((item) => item.name === setting.name);
        assert.equal(entry?.value, setting.default, `default of ${setting.name}`);
        assert.equal(entry?.description, setting.description, `description of ${setting.name}`);
        assert.deepEqual(entry?.settable, ["value"], `${setting.name} is settable`);
      }
    },
  );

  it("the README's Settings table has exactly SETTINGS, with the same defaults", TIMEOUT, () => {
    const table = readmeSettings(read("README.md"));
    assert.deepEqual(
      names(table.keys()),
      names(SETTINGS.map((setting) => setting.name)),
      "README's Settings table and SETTINGS name different settings",
    );
    for (const setting of SETTINGS) {
      const cell = table.get(setting.name) ?? "";
      // The cell starts with the value itself and may go on to say what it means.
      if (setting.default === "")
        assert.match(cell, /^empty\b/, `README's default of ${setting.name} is not "empty…"`);
      else
        assert.ok(
          cell.startsWith(`\`${setting.default}\``),
          `README's default of ${setting.name} is "${cell}", not \`${setting.default}\``,
        );
    }
  });

  it("readSettings reads exactly SETTINGS and the undeclared development paths", TIMEOUT, () => {
    const seen = new Set<string>();
    const env = new Proxy<NodeJS.ProcessEnv>(
      {},
      {
        get: (_target, key) => {
          if (typeof key === "string") seen.add(key);
          return undefined;
        },
      },
    );
    readSettings(env);
    assert.deepEqual(
      names(seen),
      names([...SETTINGS.map((setting) => setting.name), ...UNDECLARED_SETTINGS]),
    );
  });

  it("each default in SETTINGS is one readSettings accepts", TIMEOUT, () => {
    const declared = Object.fromEntries(SETTINGS.map((setting) => [setting.name, setting.default]));
    assert.deepEqual(readSettings(declared), readSettings({}));
  });
});
