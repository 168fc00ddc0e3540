// Checks the service's AsyncAPI document as a client team would: parse it with the official
// parser (0 errors expected), then generate a TypeScript client model from it with Modelina.
// Usage: node check-asyncapi.js asyncapi.json [models-folder]
'use strict';

const fs = require('fs');
const path = require('path');
const { Parser } = require('@asyncapi/parser');
const { TypeScriptGenerator } = require('@asyncapi/modelina');

const ERROR = 0;
const WARNING = 1;

async function parse(text) {
  const parser = new Parser();
  const { document, diagnostics } = await parser.parse(text);
  const errors = diagnostics.filter((d) => d.severity === ERROR);
  const warnings = diagnostics.filter((d) => d.severity === WARNING);
  return { document, errors, warnings };
}

async function generateModels(document, folder) {
  const generator = new TypeScriptGenerator({ modelType: 'interface', rawPropertyNames: true });
  const models = await generator.generate(document);
  fs.mkdirSync(folder, { recursive: true });
  for (const model of models) {
    fs.writeFileSync(path.join(folder, `${model.modelName}.ts`), model.result + '\n');
  }
  return models.map((m) => m.modelName).sort();
}

async function main() {
  const [file, folder = 'generated-models'] = process.argv.slice(2);
  const { document, errors, warnings } = await parse(fs.readFileSync(file, 'utf8'));
  const report = {
    errors: errors.map((d) => `${d.path.join('/')}: ${d.message}`),
    warnings: warnings.map((d) => `${d.path.join('/')}: ${d.message}`),
    version: document ? document.version() : null,
    channels: document ? document.channels().length : 0,
    operations: document ? document.operations().length : 0,
    messages: document ? document.messages().length : 0,
    models: [],
  };
  if (document && errors.length === 0) {
    report.models = await generateModels(document, folder);
  }
  process.stdout.write(JSON.stringify(report, null, 2) + '\n');
  process.exitCode = errors.length === 0 && report.models.length > 0 ? 0 : 1;
}

main().catch((err) => {
  process.stderr.write(`${err.stack || err}\n`);
  process.exitCode = 2;
});
