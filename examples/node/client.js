#!/usr/bin/env node
// A Node.js client of the distill gateway (distill.v1.GatewayService), built at run time from the
// repository's .proto files with @grpc/proto-loader and @grpc/grpc-js: no generated code.
//
//   node examples/node/client.js --gateway 127.0.0.1:50051 --dataset examples/addition/train.jsonl
//   node examples/node/client.js --dataset examples/addition/train.jsonl --run
//   node examples/node/client.js --watch jobs/ID
//
// Exit status: 0 done (job SUCCEEDED when one was watched), 1 an RPC failed, 2 bad command line,
// 3 the job FAILED, 4 the job was CANCELLED, 130 interrupted.
'use strict';

const crypto = require('node:crypto');
const fs = require('node:fs');
const path = require('node:path');
const { parseArgs } = require('node:util');

const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

// Resolved from this script, so the client runs from any working directory.
const PROTOS_DIR = path.resolve(__dirname, '..', '..', 'protos');
const CHUNK_BYTES = 1024 * 1024; // the contract's limit per UploadDatasetRequest.chunk
const TERMINAL_EXIT = {
  JOB_STATE_SUCCEEDED: 0,
  JOB_STATE_FAILED: 3,
  JOB_STATE_CANCELLED: 4,
};
const TRUE_WORDS = ['1', 'true', 'yes']; // what turns $DISTILL_TLS on
const STATUS_NAMES = Object.fromEntries(Object.entries(grpc.status).map(([k, v]) => [v, k]));

const USAGE = `usage: node client.js [options]

  --gateway ADDR        gateway address (default $DISTILL_GATEWAY or 127.0.0.1:50051)
  --token TOKEN         bearer token (default $DISTILL_AUTH_TOKEN; needed when the gateway sets one)
  --tls                 talk TLS to the gateway (default: plaintext, or $DISTILL_TLS=1)
  --ca-file PEM         the CA that signed the gateway's certificate (implies --tls; default
                        $DISTILL_CA_FILE, else the system's roots)
  --dataset FILE        JSONL dataset to upload, then estimate (and run with --run)
  --run                 start a distillation job after the estimate and watch it to the end
  --watch jobs/ID       watch an existing job until it reaches a terminal state
  --spec FILE           a DistillSpec as JSON (proto field names); the flags below override it
  --teacher MODEL       teacher model (default gpt-4o-mini)
  --teacher-provider P  openai | anthropic | local (default: from the model registry)
  --api-key-env NAME    env variable holding the teacher's key, read on the gateway side
  --max-tokens N        teacher output token limit per call
  --student MODEL       student model (default smollm2-135m)
  --samples N           teacher samples per prompt (default 4)
  --judge KIND          reference (match the dataset's answers, default) or llm (rubric)
  --max-steps N         training steps
  --budget USD          refuse up front / stop spending at this many USD
  --alias NAME          promote this alias to the student when the job succeeds
  --batch-api           price the estimate at the Batch-API discount
  --timeout SECONDS     deadline of each unary call (default 120)
  -h, --help            this text

Exit status: 0 ok, 1 RPC error, 2 usage error, 3 job FAILED, 4 job CANCELLED.`;

class UsageError extends Error {}

function parseCommandLine(argv) {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    options: {
      gateway: { type: 'string', default: process.env.DISTILL_GATEWAY || '127.0.0.1:50051' },
      token: { type: 'string', default: process.env.DISTILL_AUTH_TOKEN || '' },
      tls: { type: 'boolean', default: TRUE_WORDS.includes((process.env.DISTILL_TLS || '').toLowerCase()) },
      'ca-file': { type: 'string', default: process.env.DISTILL_CA_FILE || '' },
      dataset: { type: 'string' },
      run: { type: 'boolean', default: false },
      watch: { type: 'string' },
      spec: { type: 'string' },
      teacher: { type: 'string' },
      'teacher-provider': { type: 'string' },
      'api-key-env': { type: 'string' },
      'max-tokens': { type: 'string' },
      student: { type: 'string' },
      samples: { type: 'string' },
      judge: { type: 'string' },
      'max-steps': { type: 'string' },
      budget: { type: 'string' },
      alias: { type: 'string' },
      'batch-api': { type: 'boolean', default: false },
      timeout: { type: 'string', default: '120' },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) return values;
  if (!values.dataset && !values.watch) throw new UsageError('give --dataset FILE or --watch jobs/ID');
  if (values.run && !values.dataset) throw new UsageError('--run needs --dataset FILE');
  if (values.run && values.watch) throw new UsageError('--run watches its own job; drop --watch');
  if (values.watch && !/^jobs\/[^/]+$/.test(values.watch)) {
    throw new UsageError(`--watch: expected jobs/ID, got ${JSON.stringify(values.watch)}`);
  }
  if (values.judge && !['reference', 'llm'].includes(values.judge)) {
    throw new UsageError(`--judge: reference or llm, got ${JSON.stringify(values.judge)}`);
  }
  for (const flag of ['max-tokens', 'samples', 'max-steps']) {
    if (values[flag] !== undefined && !/^[1-9][0-9]*$/.test(values[flag])) {
      throw new UsageError(`--${flag}: a positive integer, got ${JSON.stringify(values[flag])}`);
    }
  }
  for (const flag of ['budget', 'timeout']) {
    if (values[flag] !== undefined && !(Number(values[flag]) > 0)) {
      throw new UsageError(`--${flag}: a positive number, got ${JSON.stringify(values[flag])}`);
    }
  }
  return values;
}

function channelCredentials(tls, caFile) {
  if (!tls && !caFile) return grpc.credentials.createInsecure();
  return grpc.credentials.createSsl(caFile ? fs.readFileSync(caFile) : null);
}

function loadGateway(address, token, credentials) {
  const definition = protoLoader.loadSync('distill/v1/gateway.proto', {
    // google/protobuf/*.proto (timestamp) are built into protobufjs, so only our folder is needed.
    includeDirs: [PROTOS_DIR],
    keepCase: true, // field names exactly as in the .proto (snake_case)
    longs: Number, // int64 counts here are far below 2^53
    enums: String,
    defaults: true,
    oneofs: true,
  });
  const proto = grpc.loadPackageDefinition(definition);
  const client = new proto.distill.v1.GatewayService(address, credentials, {
    'grpc.max_receive_message_length': 16 * 1024 * 1024,
  });
  // The bearer token travels as plain call metadata, with or without TLS: grpc-js sends call
  // credentials only over TLS, and the embedded suite listens on loopback without it.
  const metadata = () => {
    const md = new grpc.Metadata();
    if (token) md.set('authorization', `Bearer ${token}`);
    return md;
  };
  return { client, metadata };
}

function unary(gateway, method, request, timeoutSeconds) {
  return new Promise((resolve, reject) => {
    const deadline = new Date(Date.now() + timeoutSeconds * 1000);
    gateway.client[method](request, gateway.metadata(), { deadline }, (err, reply) =>
      err ? reject(err) : resolve(reply));
  });
}

// UploadDataset: a client stream, first the metadata (file name, sha256), then 1 MiB chunks.
async function uploadDataset(gateway, file, timeoutSeconds) {
  const data = fs.readFileSync(file);
  const sha256 = crypto.createHash('sha256').update(data).digest('hex');
  return new Promise((resolve, reject) => {
    const deadline = new Date(Date.now() + Math.max(timeoutSeconds, 600) * 1000);
    const call = gateway.client.UploadDataset(gateway.metadata(), { deadline }, (err, reply) =>
      err ? reject(err) : resolve(reply));
    (async () => {
      const write = (message) => new Promise((done) => {
        if (call.write(message)) done(); else call.once('drain', done);
      });
      await write({ metadata: { filename: path.basename(file), sha256 } });
      for (let offset = 0; offset < data.length; offset += CHUNK_BYTES) {
        await write({ chunk: data.subarray(offset, offset + CHUNK_BYTES) });
      }
      call.end();
    })().catch(reject);
  });
}

function readSpec(options) {
  let spec = {};
  if (options.spec) {
    try {
      spec = JSON.parse(fs.readFileSync(options.spec, 'utf8'));
    } catch (err) {
      throw new UsageError(`--spec ${options.spec}: ${err.message}`);
    }
  }
  spec.teacher = spec.teacher || {};
  if (options.teacher || !spec.teacher.model) spec.teacher.model = options.teacher || 'gpt-4o-mini';
  if (options['teacher-provider']) {
    spec.teacher.provider = `PROVIDER_${options['teacher-provider'].toUpperCase()}`;
  }
  if (options['api-key-env']) spec.teacher.api_key_env = options['api-key-env'];
  if (options['max-tokens']) spec.teacher.max_tokens = Number(options['max-tokens']);
  if (options.student || !spec.student_model) spec.student_model = options.student || 'smollm2-135m';
  if (options.samples) spec.n_samples = Number(options.samples);
  spec.judge = spec.judge || {};
  if (options.judge === 'llm') {
    spec.judge.judge = { llm: {} };
  } else if (options.judge === 'reference' || !spec.judge.judge) {
    spec.judge.judge = { reference: { mode: 'MATCH_MODE_LABEL' } };
  }
  if (options['max-steps']) {
    spec.training = { ...(spec.training || {}), max_steps: Number(options['max-steps']) };
  }
  if (options.budget) spec.budget_usd = Number(options.budget);
  if (options.alias) spec.promote_alias = options.alias;
  if (!spec.display_name && options.dataset) {
    spec.display_name = `node client: ${path.basename(options.dataset)}`;
  }
  return spec;
}

// Small amounts keep two significant digits instead of rounding to $0.0000.
const usd = (x) => {
  const v = Number(x || 0);
  return v > 0 && v < 0.0001 ? `$${v.toPrecision(2)}` : `$${v.toFixed(4)}`;
};
const hours = (x) => {
  const v = Number(x || 0);
  return v > 0 && v < 0.001 ? v.toPrecision(2) : v.toFixed(3);
};
const count = (x) => Number(x || 0).toLocaleString('en-US');

function printEstimate(estimate) {
  console.log(`prompts: ${estimate.prompts}`);
  console.log(`teacher tokens: ${count(estimate.teacher_input_tokens)} input, ` +
    `${count(estimate.teacher_output_tokens)} output`);
  console.log(`judge: ${count(estimate.judge_calls)} calls, ${count(estimate.judge_tokens)} tokens`);
  console.log(`training tokens: ${count(estimate.training_tokens)}`);
  console.log('breakdown:');
  for (const line of estimate.breakdown) {
    const q = Number(line.quantity);
    const quantity = Number.isInteger(q) ? count(q) : q.toPrecision(3);
    console.log(`  ${line.item.padEnd(9)} ${quantity.padStart(12)} ` +
      `${line.unit.padEnd(14)} ${usd(line.usd_low)} - ${usd(line.usd_high)}`);
  }
  console.log(`total: ${usd(estimate.total_usd_low)} - ${usd(estimate.total_usd_high)}`);
  console.log(`GPU hours: ${hours(estimate.gpu_hours_low)} - ${hours(estimate.gpu_hours_high)}, ` +
    `peak VRAM ${estimate.peak_vram_gb} GB`);
  for (const line of estimate.assumptions) console.log(`assumption: ${line}`);
  for (const line of estimate.warnings) console.log(`warning: ${line}`);
}

const stateName = (state) => String(state).replace(/^JOB_STATE_/, '');

function describeJob(job) {
  const parts = [new Date().toISOString().slice(11, 19), job.name, stateName(job.state)];
  const p = job.progress;
  if (p && Number(p.total) > 0) {
    const pct = Math.floor((100 * Number(p.done)) / Number(p.total));
    parts.push(`${p.done}/${p.total} ${p.unit} (${pct}%)`);
  } else if (p && Number(p.done) > 0) {
    parts.push(`${p.done} ${p.unit}`);
  }
  if (p && p.eta_seconds !== undefined && p.eta_seconds !== null) {
    parts.push(`eta ${Math.round(p.eta_seconds)}s`);
  }
  parts.push(`cost ${usd(job.cost_usd)}`);
  if (job.train_loss) parts.push(`loss ${Number(job.train_loss).toFixed(4)}`);
  if (p && p.message) parts.push(`- ${p.message}`);
  return parts.join('  ');
}

function printOutcome(job) {
  if (job.error && job.error.code) {
    console.error(`job error: ${job.error.code}: ${job.error.message}` +
      (job.error.stage ? ` (stage ${stateName(job.error.stage)})` : ''));
  }
  const outputs = job.outputs || {};
  for (const [key, ref] of Object.entries(outputs)) {
    if (ref && ref.uri) console.log(`output ${key}: ${ref.uri}`);
  }
  const evaluation = job.evaluation;
  if (evaluation && Number(evaluation.prompts) > 0) {
    for (const model of evaluation.models) {
      console.log(`eval ${model.model}: mean score ${Number(model.mean_score).toFixed(2)}`);
    }
    console.log(`eval promoted: ${evaluation.promoted} ${evaluation.promotion_reason}`);
  }
  if (Number(job.promoted_alias_version) > 0) {
    console.log(`alias ${job.spec.promote_alias} -> v${job.promoted_alias_version}`);
  }
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// WatchJob: prints every snapshot until a terminal state. The stream is safe to reopen, so a
// dropped connection (UNAVAILABLE, or an end before a terminal state) is retried with backoff.
async function watchJob(gateway, name) {
  let retries = 0;
  let last = null;
  for (;;) {
    const call = gateway.client.WatchJob({ name }, gateway.metadata());
    let interrupted = false;
    const stop = () => { interrupted = true; call.cancel(); };
    process.once('SIGINT', stop);
    let shown = '';
    try {
      for await (const reply of call) {
        retries = 0;
        last = reply.job;
        // A snapshot comes on every change, some in fields not shown here: print only news.
        const line = describeJob(last);
        if (line.slice(9) !== shown) console.log(line);
        shown = line.slice(9);
        if (last.state in TERMINAL_EXIT) break;
      }
    } catch (err) {
      if (interrupted) {
        console.error(`interrupted; ${name} keeps running on the gateway`);
        return 130;
      }
      // Reconnect only to a gateway that answered before (a restart), never on a first failure.
      if (err.code !== grpc.status.UNAVAILABLE || !last || retries >= 5) throw err;
      console.error(`watch: ${STATUS_NAMES[err.code]}: ${err.details}; reconnecting`);
    } finally {
      process.removeListener('SIGINT', stop);
      call.cancel();
    }
    if (last && last.state in TERMINAL_EXIT) {
      printOutcome(last);
      console.log(`${name} ended ${stateName(last.state)}`);
      return TERMINAL_EXIT[last.state];
    }
    if (++retries > 5) throw new Error(`${name}: the watch stream kept ending before the job did`);
    await sleep(Math.min(1000 * 2 ** retries, 15000));
  }
}

async function main(argv) {
  const options = parseCommandLine(argv);
  if (options.help) {
    console.log(USAGE);
    return 0;
  }
  const timeout = Number(options.timeout);
  const gateway = loadGateway(options.gateway, options.token,
    channelCredentials(options.tls, options['ca-file']));
  try {
    if (options.dataset) {
      if (!fs.existsSync(options.dataset)) throw new UsageError(`--dataset: no such file ${options.dataset}`);
      const spec = readSpec(options);
      const uploaded = await uploadDataset(gateway, options.dataset, timeout);
      console.log(`uploaded ${options.dataset}: ${uploaded.prompts} prompts, ` +
        `${uploaded.dataset.uri} (sha256 ${uploaded.dataset.sha256.slice(0, 12)}` +
        `${uploaded.deduplicated ? ', already stored' : ''})`);
      spec.dataset = uploaded.dataset;
      const estimate = await unary(gateway, 'Estimate',
        { spec, batch_api: options['batch-api'] }, timeout);
      printEstimate(estimate);
      if (options.run) {
        const reply = await unary(gateway, 'Distill',
          { spec, request_id: crypto.randomUUID() }, timeout);
        console.log(`started ${reply.job.name}`);
        return await watchJob(gateway, reply.job.name);
      }
    }
    if (options.watch) return await watchJob(gateway, options.watch);
    return 0;
  } finally {
    gateway.client.close();
  }
}

if (require.main === module) {
  main(process.argv.slice(2)).then(
    (code) => { process.exitCode = code; },
    (err) => {
      if (err instanceof UsageError || err.code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION' ||
          err.code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE' ||
          err.code === 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL') {
        console.error(`error: ${err.message}\n\n${USAGE}`);
        process.exitCode = 2;
      } else if (typeof err.code === 'number' && err.code in STATUS_NAMES) {
        // A gRPC status: the code name and the server's message (it names the field / line).
        console.error(`error: ${STATUS_NAMES[err.code]}: ${err.details}`);
        process.exitCode = 1;
      } else {
        console.error(`error: ${err.message || err}`);
        process.exitCode = 1;
      }
    },
  );
}

module.exports = { main, loadGateway, uploadDataset, readSpec, PROTOS_DIR };
