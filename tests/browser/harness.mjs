// Shared by the browser tests: a local stack (`target/debug/matchgate up --port 0`), a static
// server for files of this repository, and headless Debian chromium.
import { spawn } from 'node:child_process';
import { createServer } from 'node:http';
import { mkdirSync, mkdtempSync, readFile, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const ARTIFACTS = path.join(ROOT, 'target/browser-artifacts');

/** Starts `matchgate up --port 0 ARGS`; resolves with its URLs (read from its stdout) and a stop(). */
export async function startStack(args = []) {
  const stateDir = mkdtempSync(path.join(tmpdir(), 'matchgate-browser-'));
  const child = spawn(path.join(ROOT, 'target/debug/matchgate'), ['up', '--port', '0', '--state-dir', stateDir, ...args], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const stop = async () => {
    if (child.exitCode === null) {
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      await exited;
    }
    rmSync(stateDir, { recursive: true, force: true });
  };
  const websocketUrl = await new Promise((resolve, reject) => {
    let out = '';
    child.stdout.on('data', (chunk) => {
      out += chunk;
      const found = out.match(/WebSocket API\s+(ws:\/\/\S+)/);
      if (found) resolve(found[1]);
    });
    child.once('exit', (code) => reject(new Error(`matchgate up exited with ${code} before it was ready: ${out}`)));
  });
  const httpUrl = websocketUrl.replace(/^ws:/, 'http:');
  return { websocketUrl, httpUrl, stop };
}

const TYPES = { '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8', '.css': 'text/css' };

/** Serves `dir` (a folder of this repository) on 127.0.0.1; resolves with its URL and a stop(). */
export async function serveFolder(dir) {
  const base = path.join(ROOT, dir);
  const server = createServer((req, res) => {
    const file = path.join(base, path.normalize(decodeURIComponent(new URL(req.url, 'http://x').pathname)));
    if (!file.startsWith(base + path.sep)) {
      res.writeHead(403).end();
      return;
    }
    readFile(file, (err, body) => {
      if (err) {
        res.writeHead(404).end();
        return;
      }
      res.writeHead(200, { 'content-type': TYPES[path.extname(file)] ?? 'application/octet-stream' }).end(body);
    });
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address();
  return { url: `http://127.0.0.1:${port}`, stop: () => new Promise((resolve) => server.close(resolve)) };
}

/** Headless Debian chromium with a fresh profile; no network beyond 127.0.0.1 is needed. */
export async function launchBrowser() {
  const profile = mkdtempSync(path.join(tmpdir(), 'matchgate-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
    ],
  });
  return {
    context,
    close: async () => {
      await context.close();
      rmSync(profile, { recursive: true, force: true });
    },
  };
}

export async function screenshot(page, name) {
  mkdirSync(ARTIFACTS, { recursive: true });
  await page.screenshot({ path: path.join(ARTIFACTS, `${name}.png`), fullPage: true });
}
