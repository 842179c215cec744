// `infergate serve` driven by the official `openai` npm client: two `infergate sim` model servers
// behind the gateway, every process on 127.0.0.1 with a port the kernel picks.
//
//   npm ci && INFERGATE_BIN=/path/to/infergate node --test openai.test.mjs
//   (or without the test runner: node openai.test.mjs /path/to/infergate)
//
// Checks what an application using the client relies on: non-streaming chat and completions
// (model name as requested, usage), streaming chat (several content deltas, the usage chunk with
// stream_options.include_usage), errors surfacing as APIError with the right status, and a
// SIGTERM letting a stream in flight finish before the gateway exits.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';

import OpenAI from 'openai';

const kModel = 'meta-llama/Llama-3.1-8B-Instruct';
const kStartTimeoutMs = 10000;

function infergate_binary() {
  const binary = process.env.INFERGATE_BIN || process.argv.slice(2).find((arg) => !arg.startsWith('-'));
  if (!binary || !existsSync(binary)) {
    throw new Error(`set INFERGATE_BIN to the infergate binary (got ${binary ?? 'nothing'})`);
  }
  return binary;
}

// Starts `infergate <args>` and resolves with the child and the port it logged as listening on.
function start_process(binary, args, listening_pattern) {
  return new Promise((resolve, reject) => {
    const child = spawn(binary, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`infergate ${args[0]} did not start within ${kStartTimeoutMs} ms:\n${output}`));
    }, kStartTimeoutMs);
    const on_data = (data) => {
      output += data.toString();
      const match = output.match(listening_pattern);
      if (match) {
        clearTimeout(timer);
        resolve({ child, port: Number(match[1]), output: () => output });
      }
    };
    child.stdout.on('data', on_data);
    child.stderr.on('data', on_data);
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`infergate ${args[0]} exited (${code ?? signal}):\n${output}`));
    });
  });
}

function stop_process(started) {
  if (!started || started.child.exitCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    started.child.removeAllListeners('exit');
    started.child.on('exit', () => resolve());
    started.child.kill('SIGTERM');
  });
}

// The openai client for the gateway on `port`: no retries, so that every error surfaces.
function client_for(port) {
  return new OpenAI({
    baseURL: `http://127.0.0.1:${port}/v1`,
    apiKey: 'not-checked',
    maxRetries: 0,
    timeout: 10000,
  });
}

// Polls until the gateway has scraped the simulators' metrics (/readyz 200).
async function wait_until_ready(port) {
  const deadline = Date.now() + kStartTimeoutMs;
  while (Date.now() < deadline) {
    try {
      const response = await fetch(`http://127.0.0.1:${port}/readyz`);
      if (response.status === 200) return;
    } catch {
      // not listening yet
    }
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  throw new Error(`the gateway on port ${port} did not become ready`);
}

describe('infergate serve with the openai client', () => {
  const processes = [];
  let client;

  before(async () => {
    const binary = infergate_binary();
    const sim_args = ['sim', '--port', '0', '--time-scale', '100', '--mean-output-tokens', '16'];
    for (let seed = 1; seed <= 2; ++seed) {
      processes.push(
        await start_process(binary, [...sim_args, '--seed', String(seed)], /on http:\/\/127\.0\.0\.1:(\d+)/),
      );
    }
    const endpoints = processes.map((sim) => `127.0.0.1:${sim.port}`).join(',');
    const gateway = await start_process(
      binary,
      ['serve', '--host', '127.0.0.1', '--port', '0', '--workers', '2', '--access-log=false',
        '--endpoints', endpoints],
      /listening on http:\/\/127\.0\.0\.1:(\d+)/,
    );
    processes.push(gateway);
    await wait_until_ready(gateway.port);
    client = client_for(gateway.port);
  });

  after(async () => {
    await Promise.all(processes.reverse().map(stop_process));
  });

  test('chat.completions.create answers with the model requested and usage', async () => {
    const completion = await client.chat.completions.create({
      model: kModel,
      messages: [{ role: 'user', content: 'Say hello.' }],
      max_tokens: 8,
      // vLLM's extension (the client sends unknown fields as they are): exactly max_tokens
      // tokens, whichever simulator serves the request.
      ignore_eos: true,
    });
    assert.equal(completion.object, 'chat.completion');
    assert.equal(completion.model, kModel);
    assert.equal(completion.choices.length, 1);
    assert.equal(completion.choices[0].message.role, 'assistant');
    assert.ok(completion.choices[0].message.content.length > 0);
    assert.ok(completion.usage.prompt_tokens > 0);
    assert.equal(completion.usage.completion_tokens, 8);
    assert.equal(
      completion.usage.total_tokens,
      completion.usage.prompt_tokens + completion.usage.completion_tokens,
    );
  });

  test('completions.create answers with text and usage', async () => {
    const completion = await client.completions.create({
      model: kModel,
      prompt: 'Once upon a time',
      max_tokens: 5,
      // vLLM's extension (the client sends unknown fields as they are): exactly max_tokens
      // tokens, whichever simulator serves the request.
      ignore_eos: true,
    });
    assert.equal(completion.object, 'text_completion');
    assert.equal(completion.model, kModel);
    assert.equal(completion.choices.length, 1);
    assert.ok(completion.choices[0].text.length > 0);
    assert.equal(completion.usage.completion_tokens, 5);
  });

  test('streaming chat relays content deltas and the usage chunk', async () => {
    const stream = await client.chat.completions.create({
      model: kModel,
      messages: [{ role: 'user', content: 'Count to ten.' }],
      max_tokens: 12,
      // vLLM's extension (the client sends unknown fields as they are): exactly max_tokens
      // tokens, whichever simulator serves the request.
      ignore_eos: true,
      stream: true,
      stream_options: { include_usage: true },
    });
    let content_deltas = 0;
    let text = '';
    let finish_reason = null;
    let usage = null;
    for await (const chunk of stream) {
      assert.equal(chunk.object, 'chat.completion.chunk');
      assert.equal(chunk.model, kModel);
      if (chunk.usage) usage = chunk.usage;
      for (const choice of chunk.choices) {
        if (choice.delta?.content) {
          content_deltas += 1;
          text += choice.delta.content;
        }
        if (choice.finish_reason) finish_reason = choice.finish_reason;
      }
    }
    assert.ok(content_deltas >= 2, `expected several content deltas, got ${content_deltas}`);
    assert.ok(text.length > 0);
    assert.equal(finish_reason, 'length');
    assert.ok(usage, 'no usage chunk with stream_options.include_usage');
    assert.equal(usage.completion_tokens, 12);
    assert.ok(usage.prompt_tokens > 0);
  });

  test('an unknown model raises NotFoundError (404)', async () => {
    await assert.rejects(
      client.chat.completions.create({
        model: 'no-such-model',
        messages: [{ role: 'user', content: 'Hello' }],
      }),
      (error) => {
        assert.ok(error instanceof OpenAI.APIError, `not an APIError: ${error}`);
        assert.ok(error instanceof OpenAI.NotFoundError);
        assert.equal(error.status, 404);
        assert.match(error.message, /no-such-model/);
        return true;
      },
    );
  });

  test('a request without messages raises BadRequestError (400)', async () => {
    await assert.rejects(
      client.chat.completions.create({ model: kModel }),
      (error) => {
        assert.ok(error instanceof OpenAI.APIError, `not an APIError: ${error}`);
        assert.ok(error instanceof OpenAI.BadRequestError);
        assert.equal(error.status, 400);
        return true;
      },
    );
  });
});

describe('infergate serve on SIGTERM', () => {
  const processes = [];

  after(async () => {
    await Promise.all(processes.reverse().map(stop_process));
  });

  test('a stream in flight finishes, then the gateway exits with status 0', async () => {
    const binary = infergate_binary();
    // Real time: ~7 ms per token, so 40 tokens stream for about a quarter of a second.
    const sim = await start_process(binary, ['sim', '--port', '0', '--seed', '3'],
      /on http:\/\/127\.0\.0\.1:(\d+)/);
    processes.push(sim);
    const gateway = await start_process(
      binary,
      ['serve', '--host', '127.0.0.1', '--port', '0', '--workers', '1', '--access-log=false',
        '--endpoints', `127.0.0.1:${sim.port}`],
      /listening on http:\/\/127\.0\.0\.1:(\d+)/,
    );
    processes.push(gateway);
    await wait_until_ready(gateway.port);
    const client = client_for(gateway.port);
    const exited = new Promise((resolve) => {
      gateway.child.removeAllListeners('exit');
      gateway.child.on('exit', (code, signal) => resolve({ code, signal }));
    });

    const stream = await client.completions.create({
      model: kModel,
      prompt: 'Once upon a time',
      max_tokens: 40,
      ignore_eos: true,
      stream: true,
      stream_options: { include_usage: true },
    });
    let chunks = 0;
    let finish_reason = null;
    let usage = null;
    for await (const chunk of stream) {
      chunks += 1;
      if (chunks === 1) gateway.child.kill('SIGTERM');  // mid-stream
      if (chunk.usage) usage = chunk.usage;
      for (const choice of chunk.choices) {
        if (choice.finish_reason) finish_reason = choice.finish_reason;
      }
    }
    assert.equal(finish_reason, 'length', 'the stream ran to its end');
    assert.ok(usage, 'no usage chunk');
    assert.equal(usage.completion_tokens, 40);
    assert.deepEqual(await exited, { code: 0, signal: null });
    assert.match(gateway.output(), /draining/);
  });
});
