#!/usr/bin/env node
// Asks an alias through the router's OpenAI HTTP API with the official `openai` package: the code
// an application already has for OpenAI, with the router's base URL and a project's API key.
//
//   DISTILL_API_KEY=dk_... node examples/node/openai_chat.js \
//       --base-url http://127.0.0.1:52056/v1 --model support-bot "Where is my order?"
//
// Lists the models (the project's aliases), asks once, then asks again streamed, and prints one
// JSON object: {"models": [...], "answer": {...}, "streamed": {...}}.
// Exit status: 0 ok, 1 the router refused (prints {"error": {status, type, code, message}}),
// 2 bad command line.
'use strict';

const { parseArgs } = require('node:util');

const { OpenAI } = require('openai');

const USAGE = `usage: node openai_chat.js --model ALIAS [options] MESSAGE

  --base-url URL    the router's OpenAI API (default $DISTILL_ROUTER_URL/v1 or
                    http://127.0.0.1:52056/v1)
  --api-key KEY     a project's API key (default $DISTILL_API_KEY; the router's token on a
                    one-project install; any word where the router needs no key)
  --model ALIAS     the alias, or ALIAS@VERSION
  --max-tokens N    the answer's token limit (default 64)
  -h, --help        this text`;

function options() {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      'base-url': { type: 'string' },
      'api-key': { type: 'string' },
      model: { type: 'string' },
      'max-tokens': { type: 'string', default: '64' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    console.log(USAGE);
    process.exit(0);
  }
  const maxTokens = Number(values['max-tokens']);
  if (!values.model || positionals.length !== 1 || !Number.isInteger(maxTokens) || maxTokens < 1) {
    console.error(USAGE);
    process.exit(2);
  }
  const router = process.env.DISTILL_ROUTER_URL;
  return {
    baseURL: values['base-url'] || (router ? `${router.replace(/\/$/, '')}/v1`
      : 'http://127.0.0.1:52056/v1'),
    apiKey: values['api-key'] || process.env.DISTILL_API_KEY || 'none', // the SDK needs a key
    model: values.model,
    maxTokens,
    message: positionals[0],
  };
}

async function main() {
  const opts = options();
  const client = new OpenAI({ baseURL: opts.baseURL, apiKey: opts.apiKey, maxRetries: 0 });
  const request = {
    model: opts.model,
    messages: [{ role: 'user', content: opts.message }],
    max_tokens: opts.maxTokens,
  };
  const models = [];
  for await (const model of client.models.list()) {
    models.push({ id: model.id, owned_by: model.owned_by });
  }
  const completion = await client.chat.completions.create(request);
  const answer = {
    content: completion.choices[0].message.content,
    finish_reason: completion.choices[0].finish_reason,
    usage: completion.usage,
    distill: completion.distill, // who served it (the router's extra field)
  };
  const stream = await client.chat.completions.create({ ...request, stream: true });
  const streamed = { content: '', chunks: 0, finish_reason: null };
  for await (const chunk of stream) {
    const choice = chunk.choices[0];
    streamed.chunks += 1;
    streamed.content += (choice && choice.delta.content) || '';
    if (choice && choice.finish_reason) streamed.finish_reason = choice.finish_reason;
  }
  console.log(JSON.stringify({ models, answer, streamed }));
}

main().catch((err) => {
  if (err instanceof OpenAI.APIError) {
    console.log(JSON.stringify({ error: {
      status: err.status, type: err.type, code: err.code, message: err.message,
    } }));
    process.exit(1);
  }
  console.error(err);
  process.exit(1);
});
