// node-redis (the `redis` package, 6.x) at its DEFAULT connection settings against redis-proxy.
//
// node-redis 6 opens every connection with HELLO 3 (RESP3); nothing here forces RESP2.
//
// Environment:
//   PROXY_PORT      port of the proxy on 127.0.0.1 (the target of every check)
//   REDIS_PORT      port of the backing redis-server, for writes made straight to Redis
//   DIRECT=1        point the checks at redis-server itself (REDIS_PORT) instead of the proxy
//   SKIP_PENDING=1  skip the [pending] checks: features the proxy gained last,
//                   createClient({database: 1}), CLIENT SETNAME/GETNAME,
//                   for a proxy build from before they were supported
//
// Prints one PASS/FAIL/SKIP line per check and exits 1 if any check failed.
import { createClient, ErrorReply, WatchError } from 'redis';
import { createRequire } from 'node:module';
import { isDeepStrictEqual, inspect } from 'node:util';

const HOST = '127.0.0.1';
const CHECK_TIMEOUT_MS = 15000; // watchdog for one check: no check may hang the run
const VERSION = createRequire(import.meta.url)('redis/package.json').version;

function envPort(name) {
  const v = process.env[name];
  if (!v || !/^\d+$/.test(v)) {
    console.error(`node-redis: set ${name} to a port number (got ${inspect(v)})`);
    process.exit(2);
  }
  return Number(v);
}

const REDIS_PORT = envPort('REDIS_PORT');
const DIRECT = process.env.DIRECT === '1';
const TARGET_PORT = DIRECT ? REDIS_PORT : envPort('PROXY_PORT');
const TARGET_NAME = DIRECT ? 'redis-server (direct)' : 'redis-proxy';
const SKIP_PENDING = process.env.SKIP_PENDING === '1';
const P = `clients:node-redis:${process.pid}:`; // key prefix: runs never share keys

class CheckFailed extends Error {}

function expect(actual, expected, what) {
  if (!isDeepStrictEqual(actual, expected)) {
    throw new CheckFailed(`${what}: expected ${inspect(expected)}, got ${inspect(actual)}`);
  }
}

async function expectRejects(promise, what) {
  try {
    const v = await promise;
    throw new CheckFailed(`${what}: expected an error, got ${inspect(v)}`);
  } catch (e) {
    if (e instanceof CheckFailed) throw e;
    return e;
  }
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// Every client opened by a check, closed (destroyed) after it whatever happened.
let open = [];
const CONNECT_TIMEOUT_MS = 5000;

async function connect(port, options = {}) {
  // Only the address (and, for the db check, the database): the library's defaults otherwise.
  const client = createClient({ socket: { host: HOST, port }, ...options });
  const errors = [];
  client.on('error', (e) => errors.push(e));
  open.push(client);
  // node-redis retries a failed handshake forever by default: give up after a while and say why.
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => {
      const seen = errors.length ? `; last error event: ${errors[errors.length - 1].message}` : '';
      reject(new CheckFailed(`connect to port ${port} (${inspect(options)}) not ready after ${CONNECT_TIMEOUT_MS / 1000} s${seen}`));
    }, CONNECT_TIMEOUT_MS);
  });
  try {
    await Promise.race([client.connect(), timeout]);
  } finally {
    clearTimeout(timer);
  }
  return client;
}
const target = (options) => connect(TARGET_PORT, options);
const straightToRedis = (options) => connect(REDIS_PORT, options);

// --------------------------------------------------------------------------- checks

async function checkHandshake() {
  const c = await target();
  expect(await c.ping(), 'PONG', 'PING');
  // HELLO without arguments reports the protocol the connection already speaks.
  const hello = await c.sendCommand(['HELLO']);
  expect(hello?.proto, 3, 'proto of the connection (HELLO without arguments)');
}

async function checkStrings() {
  const c = await target();
  expect(await c.set(P + 'a', '1'), 'OK', 'SET a');
  expect(await c.set(P + 'b', 'two'), 'OK', 'SET b');
  expect(await c.get(P + 'a'), '1', 'GET a');
  expect(await c.get(P + 'a'), '1', 'GET a (again, may be a cache hit)');
  expect(await c.mGet([P + 'a', P + 'missing', P + 'b']), ['1', null, 'two'], 'MGET a missing b');
  expect(await c.del([P + 'a', P + 'b', P + 'missing']), 2, 'DEL a b missing');
  expect(await c.get(P + 'a'), null, 'GET a after DEL');
  expect(await c.mGet([P + 'a', P + 'b']), [null, null], 'MGET after DEL');
}

async function checkMissingKey() {
  const c = await target();
  expect(await c.get(P + 'never-set'), null, 'GET of a missing key');
  expect(await c.get(P + 'never-set'), null, 'GET of a missing key (again)');
  expect(await c.exists(P + 'never-set'), 0, 'EXISTS of a missing key');
}

async function checkHash() {
  const c = await target();
  expect(await c.hSet(P + 'h', { f1: 'v1', f2: 'v2' }), 2, 'HSET h f1 v1 f2 v2');
  // node-redis maps the RESP3 map to a plain object.
  expect({ ...(await c.hGetAll(P + 'h')) }, { f1: 'v1', f2: 'v2' }, 'HGETALL h');
  expect({ ...(await c.hGetAll(P + 'no-hash')) }, {}, 'HGETALL of a missing key');
}

async function checkZset() {
  const c = await target();
  const added = await c.zAdd(P + 'z', [
    { score: 1, value: 'a' },
    { score: 2.5, value: 'b' },
    { score: -3, value: 'c' },
  ]);
  expect(added, 3, 'ZADD z');
  // zRangeWithScores sends ZRANGE z 0 -1 WITHSCORES; scores come back as JS numbers.
  expect(
    await c.zRangeWithScores(P + 'z', 0, -1),
    [
      { value: 'c', score: -3 },
      { value: 'a', score: 1 },
      { value: 'b', score: 2.5 },
    ],
    'ZRANGE z 0 -1 WITHSCORES',
  );
}

async function checkIncr() {
  const c = await target();
  expect(await c.incr(P + 'n'), 1, 'INCR n');
  expect(await c.incrBy(P + 'n', 41), 42, 'INCRBY n 41');
  expect(await c.get(P + 'n'), '42', 'GET n');
}

async function checkWrongtype() {
  const c = await target();
  await c.hSet(P + 'wt', 'f', 'v');
  const e = await expectRejects(c.incr(P + 'wt'), 'INCR of a hash');
  if (!(e instanceof ErrorReply)) {
    throw new CheckFailed(`INCR of a hash: rejected with ${inspect(e)}, not an ErrorReply`);
  }
  if (!e.message.startsWith('WRONGTYPE')) {
    throw new CheckFailed(`INCR of a hash: ErrorReply without WRONGTYPE: ${e.message}`);
  }
  expect(await c.ping(), 'PONG', 'PING after the error (connection still usable)');
}

async function checkPipeline() {
  const c = await target();
  const pipe = c.multi();
  for (let i = 0; i < 50; i++) pipe.set(`${P}p${i}`, String(i));
  for (let i = 0; i < 50; i++) pipe.get(`${P}p${i}`);
  const got = await pipe.execAsPipeline(); // no MULTI/EXEC: a plain pipeline
  expect(got.length, 100, 'number of replies to a 100-command pipeline');
  expect(got.slice(0, 50), Array(50).fill('OK'), 'replies to the 50 SETs');
  expect(got.slice(50), [...Array(50).keys()].map(String), 'replies to the 50 GETs');
}

// How many EXECs Redis itself has run (INFO commandstats).
async function execCalls(direct) {
  const m = /cmdstat_exec:calls=(\d+)/.exec(await direct.info('commandstats'));
  return m ? Number(m[1]) : 0;
}

async function checkMultiExec() {
  const c = await target();
  const direct = await straightToRedis();
  await c.set(P + 'tx', '5');
  const execs = await execCalls(direct);
  const got = await c
    .multi()
    .incr(P + 'tx')
    .set(P + 'tx2', 'x')
    .get(P + 'tx')
    .lPush(P + 'txl', ['a', 'b'])
    .exec();
  expect(got, [6, 'OK', '6', 2], 'EXEC replies of multi().exec()');
  expect(await c.get(P + 'tx2'), 'x', 'GET of a key written in MULTI/EXEC');
  if ((await execCalls(direct)) <= execs) throw new CheckFailed('Redis ran no EXEC for multi().exec()');
}

async function checkWatch() {
  const c = await target();
  const other = await target();
  const key = P + 'watched';
  await c.set(key, '10');

  // Unchanged watched key: EXEC runs.
  await c.watch(key);
  expect(await c.multi().set(key, '11').exec(), ['OK'], 'EXEC with an unchanged watched key');

  // The watched key changed from another connection: EXEC fails with a WatchError.
  await c.watch(key);
  expect(await other.set(key, '100'), 'OK', 'SET from the other connection');
  const e = await expectRejects(c.multi().set(key, '12').exec(), 'EXEC after the watched key changed');
  if (!(e instanceof WatchError)) {
    throw new CheckFailed(`EXEC after the watched key changed: rejected with ${inspect(e)}, not a WatchError`);
  }
  expect(await c.get(key), '100', 'value after the aborted transaction');
}

async function checkBlpopTimeout() {
  const c = await target();
  const start = Date.now();
  const got = await c.blPop(P + 'empty-list', 1);
  const elapsed = (Date.now() - start) / 1000;
  expect(got, null, 'BLPOP empty-list 1');
  if (elapsed < 0.9 || elapsed > 3) {
    throw new CheckFailed(`BLPOP with a 1 s timeout took ${elapsed.toFixed(2)} s`);
  }
  expect(await c.ping(), 'PONG', 'PING after BLPOP timed out');
}

async function checkBlpopReleased() {
  const c = await target();
  const other = await target();
  const key = P + 'queue';
  const start = Date.now();
  const popped = c.blPop(key, 5);
  await sleep(300);
  expect(await other.rPush(key, 'job'), 1, 'RPUSH from the other connection');
  const got = await popped;
  const elapsed = (Date.now() - start) / 1000;
  expect(got, { key, element: 'job' }, 'BLPOP released by RPUSH');
  if (elapsed >= 4.5) {
    throw new CheckFailed(`BLPOP was not released by the RPUSH (${elapsed.toFixed(2)} s)`);
  }
  expect(await c.lLen(key), 0, 'LLEN after BLPOP took the element');
}

async function checkCoherence() {
  const c = await target();
  const direct = await straightToRedis();
  const key = P + 'coherent';
  await c.set(key, 'old');
  expect(await c.get(key), 'old', 'first GET through the target');
  expect(await c.get(key), 'old', 'second GET through the target (cached)');
  expect(await direct.set(key, 'new'), 'OK', 'SET straight on Redis');
  const deadline = Date.now() + 1000;
  for (let reads = 1; ; reads++) {
    const v = await c.get(key);
    if (v === 'new') break;
    if (Date.now() >= deadline) {
      throw new CheckFailed(`GET still returned ${inspect(v)} 1 s after a SET straight on Redis (${reads} reads)`);
    }
    await sleep(10);
  }
}

async function checkSelectDb1() {
  const key = P + 'db1';
  let c1;
  try {
    c1 = await target({ database: 1 });
    expect(await c1.set(key, 'in-db1'), 'OK', 'SET through createClient({database: 1})');
  } catch (e) {
    if (e instanceof CheckFailed) throw e;
    throw new CheckFailed(`createClient({database: 1}): connecting (SELECT 1) or SET failed: ${e.message}`);
  }
  const c0 = await target();
  expect(await c1.get(key), 'in-db1', 'GET through createClient({database: 1})');
  expect(await c0.get(key), null, 'GET through a db 0 client: db 1 data must not be visible');
  const d1 = await straightToRedis({ database: 1 });
  const d0 = await straightToRedis();
  expect(await d1.get(key), 'in-db1', 'GET straight on Redis db 1');
  expect(await d0.get(key), null, 'GET straight on Redis db 0');
  await c0.set(key, 'in-db0');
  expect(await c1.get(key), 'in-db1', 'db 1 unchanged after a SET in db 0');
}

async function checkClientName() {
  const c = await target();
  let reply;
  try {
    reply = await c.clientSetName('x');
  } catch (e) {
    throw new CheckFailed(`clientSetName('x') failed: ${e.message}`);
  }
  expect(reply, 'OK', 'CLIENT SETNAME x');
  expect(await c.clientGetName(), 'x', 'CLIENT GETNAME');
  const other = await target();
  expect(await other.clientGetName(), null, 'CLIENT GETNAME on another connection');
}

async function checkSubscribe() {
  const sub = await target();
  const pub = await target();
  const ch = P + 'news';
  const pat = P + 'n*';
  const got = [];
  let wake = null;
  const note = (m) => {
    got.push(m);
    if (wake) wake();
  };
  // node-redis (RESP3 by default) subscribes on the same connection: messages are pushes.
  await sub.subscribe(ch, (message, channel) => note(['message', channel, message]));
  await sub.pSubscribe(pat, (message, channel) => note(['pmessage', channel, message]));
  expect(await pub.publish(ch, 'hello'), 2, 'PUBLISH counts the channel and the pattern subscription');
  while (got.length < 2) await new Promise((r) => { wake = r; });
  got.sort((a, b) => a[0].localeCompare(b[0]));
  expect(got, [['message', ch, 'hello'], ['pmessage', ch, 'hello']], 'messages');
  expect(await pub.pubSubNumSub(ch), { [ch]: 1 }, 'PUBSUB NUMSUB');
  await sub.unsubscribe(ch);
  await sub.pUnsubscribe(pat);
  expect(await pub.publish(ch, 'late'), 0, 'PUBLISH after unsubscribing');
}

const CHECKS = [
  ['handshake: HELLO 3 by default', checkHandshake, false],
  ['SET/GET/MGET/DEL', checkStrings, false],
  ['missing key', checkMissingKey, false],
  ['HSET/HGETALL', checkHash, false],
  ['ZADD/ZRANGE WITHSCORES', checkZset, false],
  ['INCR', checkIncr, false],
  ['WRONGTYPE rejected as ErrorReply', checkWrongtype, false],
  ['multi().execAsPipeline() of 100 commands (no MULTI)', checkPipeline, false],
  ['multi().exec(): MULTI/EXEC', checkMultiExec, false],
  ['watch() + multi().exec(): WatchError when the key changed', checkWatch, false],
  ['BLPOP 1 s timeout returns null', checkBlpopTimeout, false],
  ['BLPOP released by RPUSH from another connection', checkBlpopReleased, false],
  ['cache coherence: SET straight on Redis seen within 1 s', checkCoherence, false],
  ['[pending] createClient({database: 1}): SELECT 1 per connection', checkSelectDb1, true],
  ["[pending] clientSetName('x') + clientGetName()", checkClientName, true],
  ['subscribe/pSubscribe: messages, unsubscribe', checkSubscribe, false],
];

function withTimeout(promise, ms) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new CheckFailed(`check still running after ${ms / 1000} s`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

async function main() {
  console.log(`node-redis ${VERSION} -> ${TARGET_NAME} at ${HOST}:${TARGET_PORT} (Redis at ${HOST}:${REDIS_PORT})`);
  let passed = 0;
  let failed = 0;
  let skipped = 0;
  for (const [name, fn, pending] of CHECKS) {
    if (pending && SKIP_PENDING) {
      console.log(`SKIP  ${name} (SKIP_PENDING=1)`);
      skipped++;
      continue;
    }
    const start = Date.now();
    try {
      await withTimeout(fn(), CHECK_TIMEOUT_MS);
      passed++;
      console.log(`PASS  ${name} (${((Date.now() - start) / 1000).toFixed(2)} s)`);
    } catch (e) {
      failed++;
      const kind = e instanceof CheckFailed ? '' : `${e?.constructor?.name ?? 'Error'}: `;
      const hint = pending ? ' (SKIP_PENDING=1 skips this check)' : '';
      console.log(`FAIL  ${name}: ${kind}${e?.message ?? inspect(e)}${hint}`);
      if (!(e instanceof CheckFailed) && e?.stack) console.log(e.stack.split('\n').slice(1, 4).join('\n'));
    } finally {
      const clients = open;
      open = [];
      for (const c of clients) {
        try {
          c.destroy();
        } catch {
          // already closed
        }
      }
    }
  }
  console.log(`node-redis: ${passed} passed, ${failed} failed, ${skipped} skipped`);
  return failed ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  (e) => {
    console.log(`node-redis: crashed: ${e?.stack ?? inspect(e)}`);
    process.exit(1);
  },
);
