// ioredis (5.x) in cluster mode (Redis.Cluster, default settings) against redis-proxy in front of
// a Redis Cluster, which it sees as a cluster of one node owning every slot.
//
// Environment:
//   PROXY_PORT   port of the proxy on 127.0.0.1 (the target of every check)
//   REDIS_PORT   port of one node of the cluster, for writes made straight to it
//   DIRECT=1     point the checks at the cluster itself (REDIS_PORT) instead of the proxy
//
// Prints one PASS/FAIL line per check and exits 1 if any check failed.
import Redis from 'ioredis';
import { isDeepStrictEqual, inspect } from 'node:util';

function envPort(name) {
  const v = process.env[name];
  if (!v || !/^\d+$/.test(v)) {
    console.error(`ioredis-cluster: set ${name} to a port number (got ${inspect(v)})`);
    process.exit(2);
  }
  return Number(v);
}

const REDIS_PORT = envPort('REDIS_PORT');
const DIRECT = process.env.DIRECT === '1';
const TARGET = DIRECT ? REDIS_PORT : envPort('PROXY_PORT');
const failed = [];

function eq(got, want, what) {
  if (!isDeepStrictEqual(got, want)) {
    throw new Error(`${what}: got ${inspect(got)}, want ${inspect(want)}`);
  }
}

async function check(name, f) {
  try {
    await f();
    console.log(`PASS ${name}`);
  } catch (e) {
    failed.push(name);
    console.log(`FAIL ${name}\n${e.stack}`);
  }
}

const rc = new Redis.Cluster([{ host: '127.0.0.1', port: TARGET }]);
const direct = new Redis.Cluster([{ host: '127.0.0.1', port: REDIS_PORT }]);
const keys = Array.from({ length: 50 }, (_, i) => `iocluster:${i}`);

await check('set and get keys of every slot range', async () => {
  for (const k of keys) eq(await rc.set(k, `v-${k}`), 'OK', k);
  for (const k of keys) {
    eq(await rc.get(k), `v-${k}`, k);
    eq(await direct.get(k), `v-${k}`, k);
  }
});

await check('a write straight to the cluster is seen (no stale cache)', async () => {
  const k = keys[3];
  eq(await rc.get(k), `v-${k}`, 'before');
  await direct.set(k, 'changed');
  const deadline = Date.now() + 5000;
  while ((await rc.get(k)) !== 'changed') {
    if (Date.now() > deadline) throw new Error('still the old value');
    await new Promise((r) => setTimeout(r, 20));
  }
});

await check('pipeline and hash-tagged transaction', async () => {
  const got = await rc.pipeline().set('{io}a', '1').incr('{io}a').get('{io}a').exec();
  eq(got, [[null, 'OK'], [null, 2], [null, '2']], 'pipeline');
  const tx = await rc.multi().incr('{io}a').get('{io}a').exec();
  eq(tx, [[null, 3], [null, '3']], 'multi');
});

await check('del across the keys', async () => {
  let n = 0;
  for (const k of keys) n += await rc.del(k);
  eq(n, keys.length, 'deleted');
});

rc.disconnect();
direct.disconnect();
if (failed.length) {
  console.log(`ioredis-cluster: ${failed.length} failed: ${failed.join(', ')}`);
  process.exit(1);
}
console.log('ioredis-cluster: all checks passed');
