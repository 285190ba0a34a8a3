// Runs an ONNX model in onnxruntime-node, a runtime independent of Trellis, for the export
// tests: node run_model.js MODEL INPUT.json OUTPUT.json. INPUT.json is {"rows": [[f, ...], ...]}
// fed as the float tensor "features" [rows, F]; OUTPUT.json gets every graph output as
// {"dims": [...], "data": [...]} (int64 outputs as numbers).
'use strict';
const fs = require('fs');
const ort = require('onnxruntime-node');

async function main() {
  const [model, input, output] = process.argv.slice(2);
  if (!output) throw new Error('usage: node run_model.js MODEL INPUT.json OUTPUT.json');
  const rows = JSON.parse(fs.readFileSync(input, 'utf8')).rows;
  const features = rows.length ? rows[0].length : 0;
  const data = new Float32Array(rows.length * features);
  rows.forEach((row, i) => data.set(row, i * features));
  const session = await ort.InferenceSession.create(model);
  const results = await session.run({features: new ort.Tensor('float32', data, [rows.length, features])});
  const out = {};
  for (const name of session.outputNames) {
    const t = results[name];
    out[name] = {dims: t.dims, type: t.type, data: Array.from(t.data, Number)};
  }
  fs.writeFileSync(output, JSON.stringify(out));
}

main().catch((e) => {
  console.error(`run_model.js: ${e.stack || e}`);
  process.exit(1);
});
