#!/usr/bin/env node
// Drives Microsoft's Web Chat in headless Chromium through the offline-directline emulator against a running bot.
//   node drive.js --bot http://127.0.0.1:PORT/api/messages --steps steps.json --out DIR [--chromium /usr/bin/chromium]
// steps.json: [{"see": "text"}, {"click": "button title"}, {"type": "text to send"}, ...], each bounded by
// --step-timeout-ms. Writes DIR/webchat-conversation.png and prints one JSON result line; exits 1 on any failure.
// Everything listens on and talks to 127.0.0.1: the page cannot reach any other host (requests are aborted and
// reported, and Chromium resolves no other name).
'use strict';

const fs = require('fs');
const path = require('path');
const express = require('express');
const { getRouter } = require('offline-directline');
const { chromium } = require('playwright-core');

const CHROMIUM_FLAGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  // Belt and braces for what the page's request routing cannot see (the browser's own connections): no host name
  // resolves but 127.0.0.1, and whatever is not loopback goes to a proxy on a closed local port. Traced with
  // strace, a whole run connects TCP to 127.0.0.1 only; the one other address is the UDP socket of Chromium's IPv6
  // reachability probe, which is connected but never sends.
  '--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1',
  '--proxy-server=http://127.0.0.1:9'
];

function options(argv) {
  const found = { chromium: '/usr/bin/chromium', stepTimeoutMs: 20000 };
  for (let i = 2; i < argv.length; i += 2) {
    const [name, value] = [argv[i], argv[i + 1]];
    if (value === undefined) throw new Error(`${name} needs a value`);
    if (name === '--bot') found.bot = value;
    else if (name === '--steps') found.steps = value;
    else if (name === '--out') found.out = value;
    else if (name === '--chromium') found.chromium = value;
    else if (name === '--step-timeout-ms') found.stepTimeoutMs = Number(value);
    else throw new Error(`unknown option ${name}`);
  }
  for (const name of ['bot', 'steps', 'out']) {
    if (!found[name]) throw new Error(`--${name} is required`);
  }
  return found;
}

function isLocal(url) {
  try {
    const { protocol, hostname } = new URL(url);
    return ['data:', 'blob:', 'about:'].includes(protocol) || hostname === '127.0.0.1';
  } catch (error) {
    return false;
  }
}

function listen(app) {
  return new Promise((resolve, reject) => {
    const server = app.listen(0, '127.0.0.1', () => resolve(server));
    server.on('error', reject);
  });
}

async function run(opts, result) {
  const steps = JSON.parse(fs.readFileSync(opts.steps, 'utf8'));
  const app = express();
  const server = await listen(app);
  const origin = `http://127.0.0.1:${server.address().port}`;
  app.get('/', (req, res) => res.sendFile(path.join(__dirname, 'index.html')));
  // The package's exports map does not list its prebuilt bundle, so it is found by path.
  const bundle = path.join(__dirname, 'node_modules', 'botframework-webchat', 'dist', 'webchat.js');
  app.get('/webchat.js', (req, res) => res.sendFile(bundle));
  app.use(getRouter(origin, opts.bot)); // the emulator: /directline for Web Chat, /v3/conversations for the bot

  const profile = fs.mkdtempSync(path.join(opts.out, 'chromium-profile-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: opts.chromium,
    headless: true,
    args: CHROMIUM_FLAGS,
    viewport: { width: 480, height: 900 },
    timeout: 3 * opts.stepTimeoutMs // starting a browser on a busy machine takes longest
  });
  try {
    await context.route('**/*', route => {
      const url = route.request().url();
      if (isLocal(url)) return route.continue();
      result.outsideRequests.push(url);
      return route.abort('blockedbyclient');
    });
    const page = context.pages()[0] || (await context.newPage());
    page.on('pageerror', error => result.pageErrors.push(String(error)));
    await page.goto(`${origin}/`, { timeout: 3 * opts.stepTimeoutMs });
    for (const step of steps) {
      const timeout = opts.stepTimeoutMs;
      if (step.see !== undefined) {
        await page.getByText(step.see, { exact: false }).last().waitFor({ state: 'visible', timeout });
      } else if (step.click !== undefined) {
        // The suggested actions bar, not the copy of the buttons read out by the screen-reader live region.
        const bar = page.getByRole('toolbar', { name: 'Suggested actions' });
        await bar.getByRole('button', { name: step.click, exact: true }).click({ timeout });
      } else if (step.type !== undefined) {
        const box = page.getByRole('textbox').last();
        await box.fill(step.type, { timeout });
        await box.press('Enter', { timeout });
      } else {
        throw new Error(`unknown step ${JSON.stringify(step)}`);
      }
      result.done.push(step);
    }
  } finally {
    const pages = context.pages();
    if (pages.length) {
      result.screenshot = path.join(opts.out, 'webchat-conversation.png');
      await pages[0].screenshot({ path: result.screenshot, fullPage: true, timeout: opts.stepTimeoutMs });
    }
    await context.close();
    await new Promise(resolve => server.close(resolve));
  }
}

async function main() {
  const result = { ok: false, done: [], outsideRequests: [], pageErrors: [] };
  try {
    await run(options(process.argv), result);
    result.ok = result.outsideRequests.length === 0;
  } catch (error) {
    result.error = String(error && error.stack ? error.stack : error);
  }
  process.stdout.write(JSON.stringify(result) + '\n');
  process.exit(result.ok ? 0 : 1);
}

main();
