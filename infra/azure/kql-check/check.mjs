// Parses and analyses KQL with the Kusto language service (Kusto.Language, as shipped in
// @kusto/language-service-next) against a schema file, without any cluster or network.
//
//   node check.mjs < request.json > diagnostics.json
//
// request.json: {
//   "schema": "<path of a schema file>",                       // {"databases": {NAME: {"tables": {TABLE: {COLUMN: TYPE}}}}}
//   "queries": [{"id": "...", "database": "NAME", "text": "..."}]
// }
// Output: {"engine": "...", "results": [{"id", "database", "diagnostics": [{severity, code, message, start, length,
// line, column, snippet}]}]} with syntax, semantic and analyzer diagnostics of each query.
// Exit status: 0 when the output was written (whatever the diagnostics), 2 when the request itself is unusable.

import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
// The package is a Bridge.NET build: the Bridge runtime must be loaded before the Kusto.Language assembly.
require('@kusto/language-service-next/bridge.js');
require('@kusto/language-service-next/Kusto.Language.Bridge.js');

const Kusto = globalThis.Kusto.Language;
const Symbols = Kusto.Symbols;

function fail(message) {
  process.stderr.write(`kql-check: ${message}\n`);
  process.exit(2);
}

function listOf(readOnlyList) {
  const items = [];
  const count = readOnlyList ? readOnlyList.Count : 0;
  for (let i = 0; i < count; i += 1) {
    items.push(readOnlyList.getItem(i));
  }
  return items;
}

function buildDatabase(name, spec) {
  const tables = [];
  for (const [tableName, columns] of Object.entries(spec.tables ?? {})) {
    const columnSymbols = Object.entries(columns).map(([columnName, typeName]) => {
      const type = Symbols.ScalarTypes.GetSymbol(typeName);
      if (!type) {
        fail(`unknown column type ${JSON.stringify(typeName)} for ${tableName}.${columnName}`);
      }
      return new Symbols.ColumnSymbol(columnName, type, null, null, null, null);
    });
    tables.push(new Symbols.TableSymbol.$ctor4(tableName, columnSymbols));
  }
  return new Symbols.DatabaseSymbol.$ctor1(name, tables, false);
}

function position(text, offset) {
  const before = text.slice(0, offset).split('\n');
  return { line: before.length, column: before[before.length - 1].length + 1 };
}

function describe(diagnostic, text) {
  const start = diagnostic.Start;
  const length = diagnostic.Length;
  return {
    severity: diagnostic.Severity,
    code: diagnostic.Code,
    message: diagnostic.Message,
    start,
    length,
    ...position(text, start),
    snippet: text.slice(start, start + Math.max(length, 1)),
  };
}

function analyse(text, globals) {
  const service = new Kusto.Editor.KustoCodeService.$ctor1(text, globals);
  const found = [...listOf(service.GetDiagnostics(true)), ...listOf(service.GetAnalyzerDiagnostics(true))];
  const seen = new Set();
  const diagnostics = [];
  for (const diagnostic of found) {
    const described = describe(diagnostic, text);
    const key = `${described.code}:${described.start}:${described.message}`;
    if (!seen.has(key)) {
      seen.add(key);
      diagnostics.push(described);
    }
  }
  return diagnostics;
}

let request;
try {
  request = JSON.parse(readFileSync(0, 'utf8'));
} catch (error) {
  fail(`standard input is not a JSON request: ${error.message}`);
}
if (!request || typeof request.schema !== 'string' || !Array.isArray(request.queries)) {
  fail('the request needs "schema" (a file path) and "queries" (a list)');
}

let schema;
try {
  schema = JSON.parse(readFileSync(request.schema, 'utf8'));
} catch (error) {
  fail(`cannot read the schema ${request.schema}: ${error.message}`);
}

const globalsByDatabase = new Map();
for (const [name, spec] of Object.entries(schema.databases ?? {})) {
  globalsByDatabase.set(name, Kusto.GlobalState.Default.WithDatabase(buildDatabase(name, spec)));
}

const results = request.queries.map((query) => {
  const globals = globalsByDatabase.get(query.database);
  if (!globals) {
    fail(`query ${query.id}: no database ${JSON.stringify(query.database)} in the schema`);
  }
  return { id: query.id, database: query.database, diagnostics: analyse(String(query.text), globals) };
});

const packageJson = require('@kusto/language-service-next/package.json');
process.stdout.write(`${JSON.stringify({ engine: `${packageJson.name} ${packageJson.version}`, results }, null, 1)}\n`);
