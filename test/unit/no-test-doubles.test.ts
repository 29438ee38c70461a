import assert from "node:assert/strict";
import { readdir, readFile } from "node:fs/promises";
import { basename, dirname, join, relative, resolve } from "node:path";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import ts from "typescript";

/**
 * Everything under src/ is compiled into dist/ and ships in the plugin, so test doubles belong
 * in test/support/. This guards against the defect where the in-memory etcd (memory-kv.ts),
 * MemoryStore, NoFirewall, RecordingPublisher and createRecordingRunner were all in src/.
 */

const SRC = fileURLToPath(new URL("../../src/", import.meta.url));

/**
 * Names test doubles go by: in-memory fakes, recorders and do-nothing stand-ins, plus the
 * factories that make them (createRecordingRunner).
 */
const DOUBLE_NAME =
  /^(?:(?:create|make)(?=[A-Z]))?(?:[Mm]emory|[Ff]ake|[Rr]ecording|[Mm]ock|[Ss]tub|No[A-Z])/;

/** File names test doubles live in: memory-kv.ts, fake-host.ts, recording-runner.ts, no-firewall.ts. */
const DOUBLE_FILE = /^(?:memory|fake|recording|mock|stub|no)-/;

/** Every .ts file under src/, as absolute paths. */
async function sourceFiles(directory: string): Promise<string[]> {
  const files: string[] = [];
  for (const entry of await readdir(directory, { withFileTypes: true })) {
    const path = join(directory, entry.name);
    if (entry.isDirectory()) files.push(...(await sourceFiles(path)));
    else if (entry.name.endsWith(".ts")) files.push(path);
  }
  return files;
}

const hasExport = (node: ts.Node): boolean =>
  ts.canHaveModifiers(node) &&
  (ts.getModifiers(node) ?? []).some((modifier) => modifier.kind === ts.SyntaxKind.ExportKeyword);

/** The names a module exports as values (what reaches dist/): classes, functions, constants. */
function exportedValueNames(source: ts.SourceFile): string[] {
  const names: string[] = [];
  for (const statement of source.statements) {
    if (ts.isExportDeclaration(statement)) {
      if (statement.isTypeOnly) continue;
      const clause = statement.exportClause;
      if (clause !== undefined && ts.isNamedExports(clause)) {
        for (const element of clause.elements)
          if (!element.isTypeOnly) names.push(element.name.text);
      }
      continue;
    }
    if (!hasExport(statement)) continue;
    if (
      (ts.isClassDeclaration(statement) ||
        ts.isFunctionDeclaration(statement) ||
        ts.isEnumDeclaration(statement)) &&
      statement.name !== undefined
    ) {
      names.push(statement.name.text);
    } else if (ts.isVariableStatement(statement)) {
      for (const declaration of statement.declarationList.declarations) {
        if (ts.isIdentifier(declaration.name)) names.push(declaration.name.text);
      }
    }
  }
  return names;
}

/** Relative module specifiers of a module's imports and re-exports (including import()). */
function relativeSpecifiers(source: ts.SourceFile): string[] {
  const specifiers: string[] = [];
  const visit = (node: ts.Node): void => {
    if (
      (ts.isImportDeclaration(node) || ts.isExportDeclaration(node)) &&
      node.moduleSpecifier !== undefined &&
      ts.isStringLiteral(node.moduleSpecifier)
    ) {
      specifiers.push(node.moduleSpecifier.text);
    } else if (
      ts.isCallExpression(node) &&
      node.expression.kind === ts.SyntaxKind.ImportKeyword &&
      node.arguments[0] !== undefined &&
      ts.isStringLiteral(node.arguments[0])
    ) {
      specifiers.push(node.arguments[0].text);
    }
    ts.forEachChild(node, visit);
  };
  visit(source);
  return specifiers.filter((specifier) => specifier.startsWith("."));
}

let parsedOnce: Promise<{ path: string; source: ts.SourceFile }[]> | undefined;

/** Every module under src/, parsed once for all the tests here. */
function parsedSources(): Promise<{ path: string; source: ts.SourceFile }[]> {
  parsedOnce ??= sourceFiles(SRC).then((paths) =>
    Promise.all(
      paths.map(async (path) => ({
        path,
        source: ts.createSourceFile(path, await readFile(path, "utf8"), ts.ScriptTarget.Latest),
      })),
    ),
  );
  return parsedOnce;
}

const shown = (path: string): string => `src/${relative(SRC, path)}`;

describe("no test doubles ship in the plugin", () => {
  it("no file under src/ is named like a test double", async () => {
    const offenders = (await sourceFiles(SRC))
      .filter((path) => DOUBLE_FILE.test(basename(path)))
      .map(shown);
    assert.deepEqual(offenders, [], `move these files to test/support/: ${offenders.join(", ")}`);
  });

  it("no module under src/ exports a value named like a test double", async () => {
    const offenders: string[] = [];
    const seen = new Set<string>();
    for (const { path, source } of await parsedSources()) {
      for (const name of exportedValueNames(source)) {
        seen.add(name);
        if (DOUBLE_NAME.test(name)) offenders.push(`${shown(path)}: ${name}`);
      }
    }
    // The scan must see real exports, or it would pass by finding nothing at all.
    for (const name of ["FileStore", "ProxyPublisher", "createRunner", "hostSide"]) {
      assert.ok(seen.has(name), `the scan of src/ missed the export ${name}`);
    }
    assert.deepEqual(offenders, [], `move these exports to test/support/: ${offenders.join(", ")}`);
  });

  it("no module under src/ imports from outside src/ (test/support/ stays out of dist/)", async () => {
    const offenders: string[] = [];
    for (const { path, source } of await parsedSources()) {
      for (const specifier of relativeSpecifiers(source)) {
        const target = resolve(dirname(path), specifier);
        if (relative(SRC, target).startsWith("..")) offenders.push(`${shown(path)}: ${specifier}`);
      }
    }
    assert.deepEqual(offenders, [], `src/ must not import these: ${offenders.join(", ")}`);
  });

  it("the name pattern catches the doubles this test was written for, and not real code", () => {
    for (const name of [
      "MemoryKeyValueStore",
      "MemoryStore",
      "NoFirewall",
      "RecordingPublisher",
      "createRecordingRunner",
      "FakeDatapath",
    ]) {
      assert.ok(DOUBLE_NAME.test(name), name);
    }
    for (const name of ["FileStore", "ProxyPublisher", "createRunner", "NotFound", "normalize"]) {
      assert.ok(!DOUBLE_NAME.test(name), name);
    }
    assert.ok(DOUBLE_FILE.test("memory-kv.ts"));
    assert.ok(!DOUBLE_FILE.test("name-sync.ts"));
  });
});
