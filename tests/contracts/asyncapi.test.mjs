// Validates protocol/schema/asyncapi.yaml with the AsyncAPI parser (the AsyncAPI initiative's own
// validator), and checks that it names every client action and push of the generated JSON Schema.
// Run: npm ci --prefix tests/contracts --ignore-scripts && node --test tests/contracts/
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import { Parser, fromFile } from '@asyncapi/parser';

const schemaDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../protocol/schema');
const readJson = (name) => JSON.parse(readFileSync(path.join(schemaDir, name), 'utf8'));
const ERROR = 0; // DiagnosticSeverity.Error

async function parsed() {
  const { document, diagnostics } = await fromFile(new Parser(), path.join(schemaDir, 'asyncapi.yaml')).parse();
  const errors = diagnostics.filter((d) => d.severity === ERROR);
  assert.deepEqual(errors.map((d) => `${d.path.join('.')}: ${d.message}`), [], 'asyncapi.yaml has errors');
  assert.ok(document, 'asyncapi.yaml parses');
  return document;
}

test('asyncapi.yaml is a valid AsyncAPI 3 document', async () => {
  const document = await parsed();
  assert.equal(document.version(), '3.0.0');
  assert.deepEqual(document.servers().all().map((s) => s.id()).sort(), ['aws', 'local']);
});

test('asyncapi.yaml has one message per client action and per push, with the generated payload', async () => {
  const document = await parsed();
  const messages = new Map(document.messages().all().map((m) => [m.id(), m]));
  const expected = [
    ...readJson('client-action.schema.json').oneOf.map((s) => ['action', s.properties.action.const]),
    ...readJson('push.schema.json').oneOf.map((s) => ['type', s.properties.type.const]),
  ];
  for (const [tag, name] of expected) {
    const message = messages.get(name);
    assert.ok(message, `asyncapi.yaml has no message ${name}`);
    const payload = message.payload().json();
    assert.equal(payload.properties?.[tag]?.const, name, `message ${name} carries the schema of ${name}`);
  }
  assert.equal(messages.size, expected.length, 'no message without a schema behind it');
});
