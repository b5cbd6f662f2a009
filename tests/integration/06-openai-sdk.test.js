// The official `openai` npm client against modelmux: chat (plain and streamed), embeddings,
// model list, and an error the SDK turns into its typed exception.
'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const OpenAI = require('openai');
const h = require('./lib/harness');

async function setup(t) {
  const port = await h.freePorts(2);
  const d = await h.startDaemon(t, {
    config: `startPort: ${port}
models:
  chat:
    cmd: ${h.FAKE} --port \${PORT} --model chat --chunks 6 --chunk-delay 20 --reply "one two three four five six"
    aliases: [gpt-4o-mini]
    name: Chat model
  embed:
    cmd: ${h.FAKE} --port \${PORT} --model embed
`,
  });
  const client = new OpenAI({ baseURL: `${d.url}/v1`, apiKey: 'x', maxRetries: 0, timeout: 20000 * h.SLOW });
  return { d, client };
}

test('chat completion, not streamed', async (t) => {
  const { d, client } = await setup(t);
  const r = await client.chat.completions.create({
    model: 'gpt-4o-mini',
    messages: [{ role: 'user', content: 'hi' }],
  });
  assert.equal(r.object, 'chat.completion');
  assert.equal(r.choices[0].message.role, 'assistant');
  assert.equal(r.choices[0].message.content, 'one two three four five six');
  assert.equal(r.choices[0].finish_reason, 'stop');
  assert.ok(r.usage.total_tokens > 0);
  await d.stop();
});

test('chat completion, streamed', async (t) => {
  const { d, client } = await setup(t);
  const stream = await client.chat.completions.create({
    model: 'chat',
    messages: [{ role: 'user', content: 'hi' }],
    stream: true,
  });
  let text = '';
  let n = 0;
  let finish = null;
  for await (const chunk of stream) {
    n++;
    assert.equal(chunk.object, 'chat.completion.chunk');
    text += chunk.choices[0]?.delta?.content || '';
    finish = chunk.choices[0]?.finish_reason || finish;
  }
  assert.equal(text, 'one two three four five six');
  assert.equal(n, 7, 'six content chunks and the final one');
  assert.equal(finish, 'stop');
  await d.stop();
});

test('embeddings', async (t) => {
  const { d, client } = await setup(t);
  // The fake backend answers float arrays only; without encoding_format the SDK asks for
  // base64 and would decode the floats as base64.
  const r = await client.embeddings.create({ model: 'embed', input: ['hello', 'world'], encoding_format: 'float' });
  assert.equal(r.object, 'list');
  assert.ok(r.data.length >= 1);
  assert.ok(Array.isArray(r.data[0].embedding) && r.data[0].embedding.length > 0);
  assert.ok(r.data[0].embedding.every((x) => typeof x === 'number'));
  await d.stop();
});

test('models.list()', async (t) => {
  const { d, client } = await setup(t);
  const ids = [];
  for await (const m of client.models.list()) ids.push(m.id);
  assert.deepEqual(ids, ['chat', 'embed']);
  const page = await client.models.list();
  assert.equal(page.data[0].name, 'Chat model');
  assert.equal(page.data[0].object, 'model');
  await d.stop();
});

test('an unknown model raises the SDK NotFoundError with the daemon message', async (t) => {
  const { d, client } = await setup(t);
  await assert.rejects(
    client.chat.completions.create({ model: 'nope', messages: [{ role: 'user', content: 'hi' }] }),
    (e) => {
      assert.ok(e instanceof OpenAI.NotFoundError, `got ${e && e.constructor && e.constructor.name}`);
      assert.equal(e.status, 404);
      assert.match(e.message, /model "?nope"? not found/);
      assert.equal(e.code, 'model_not_found');
      return true;
    });
  await d.stop();
});
