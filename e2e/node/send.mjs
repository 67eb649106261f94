// send.mjs drives an unmodified Node.js analytics SDK against a Kith server
// for the end-to-end tests: it sends an anonymous visitor's sign-up journey
// (two anonymous calls, identify, alias, two calls as the user), flushes,
// and prints what it sent as JSON on stdout.
//
// Usage: node send.mjs [url] [writeKey] [sdk] [runId]
// or the environment variables KITH_URL, KITH_WRITE_KEY, KITH_SDK and
// KITH_RUN_ID; arguments win. sdk is "segment" (@segment/analytics-node) or
// "rudderstack" (@rudderstack/rudder-sdk-node).
//
// The visitor's ids are derived from the sdk name and the run id exactly as
// newVisitor in main_test.go derives them, so the Go test knows what to
// look up.

import { randomUUID } from 'node:crypto';
import { Analytics as SegmentAnalytics } from '@segment/analytics-node';
import RudderAnalytics from '@rudderstack/rudder-sdk-node';

const [argURL, argKey, argSDK, argRun] = process.argv.slice(2);
const url = argURL || process.env.KITH_URL;
const writeKey = argKey || process.env.KITH_WRITE_KEY;
const sdk = argSDK || process.env.KITH_SDK;
const runId = argRun || process.env.KITH_RUN_ID;
if (!url || !writeKey || !sdk || !runId) {
  console.error('usage: node send.mjs URL WRITE_KEY segment|rudderstack RUN_ID (or KITH_URL, KITH_WRITE_KEY, KITH_SDK, KITH_RUN_ID)');
  process.exit(2);
}

// The visitor, as newVisitor derives it in Go.
const visitor = {
  anonymousId: `anon-${sdk}-${runId}`,
  userId: `user-${sdk}-${runId}`,
  rawEmail: `  Visitor.${sdk.toUpperCase()}.${runId}@Example.COM `,
  name: `Visitor ${runId}`,
  plan: 'pro',
};

// The journey, as [method, message] pairs in the common shape of both SDKs.
// Calls after sign-up carry the user id only.
const journey = [
  ['page', { anonymousId: visitor.anonymousId, name: 'Home', properties: { path: '/', title: 'Home' } }],
  ['track', { anonymousId: visitor.anonymousId, event: 'Product Viewed', properties: { product_id: 'p-1', price: 19.99 } }],
  ['identify', {
    anonymousId: visitor.anonymousId,
    userId: visitor.userId,
    traits: { email: visitor.rawEmail, name: visitor.name, plan: visitor.plan },
  }],
  ['alias', { previousId: visitor.anonymousId, userId: visitor.userId }],
  ['track', { userId: visitor.userId, event: 'Order Completed', properties: { order_id: 'o-1', revenue: 19.99, currency: 'EUR' } }],
  ['page', { userId: visitor.userId, name: 'Account', properties: { path: '/account' } }],
];

// sendSegment uses @segment/analytics-node: the SDK generates the
// messageIds, which each call's callback reports. Three events per batch
// make it send two batches; closeAndFlush sends what is left and waits.
async function sendSegment() {
  const analytics = new SegmentAnalytics({ writeKey, host: url, path: '/v1/batch', maxEventsInBatch: 3, flushInterval: 200, maxRetries: 3 });
  const errors = [];
  analytics.on('error', (err) => errors.push(err));
  const calls = journey.map(([method, msg]) => new Promise((resolve, reject) => {
    analytics[method](msg, (err, ctx) => {
      if (err) {
        reject(new Error(`${method} failed: ${err.message || err}`));
        return;
      }
      const e = ctx.event;
      resolve({ messageId: e.messageId, type: e.type, event: e.event || '' });
    });
  }));
  await analytics.closeAndFlush({ timeout: 30000 });
  const sent = await Promise.all(calls);
  if (errors.length > 0) {
    throw new Error(`segment SDK errors: ${errors.map((e) => e.reason?.message || e.code).join('; ')}`);
  }
  return sent;
}

// sendRudderstack uses @rudderstack/rudder-sdk-node with its defaults (gzip
// on). It does not report generated messageIds, so each call passes its own
// messageId, as an application that wants idempotent retries does. Three
// events per batch; flush until the queue is empty and every call's
// callback has fired.
async function sendRudderstack() {
  const client = new RudderAnalytics(writeKey, { dataPlaneUrl: url, flushAt: 3, flushInterval: 200, retryCount: 3, logLevel: 'error' });
  const sent = [];
  const calls = journey.map(([method, msg]) => {
    const messageId = `${runId}-${randomUUID()}`;
    sent.push({ messageId, type: method, event: msg.event || '' });
    return new Promise((resolve, reject) => {
      client[method]({ ...msg, messageId }, (err) => (err ? reject(new Error(`${method} failed: ${err.message || err}`)) : resolve()));
    });
  });
  for (let i = 0; i < 10 && client.queue.length > 0; i++) {
    await client.flush();
  }
  await Promise.all(calls);
  return sent;
}

const senders = { segment: sendSegment, rudderstack: sendRudderstack };
if (!senders[sdk]) {
  console.error(`unknown sdk ${JSON.stringify(sdk)}: want segment or rudderstack`);
  process.exit(2);
}
try {
  const messages = await senders[sdk]();
  process.stdout.write(JSON.stringify({ sdk, ...visitor, messages }) + '\n');
  process.exit(0);
} catch (err) {
  console.error(`send.mjs (${sdk}): ${err.stack || err}`);
  process.exit(1);
}
