#!/usr/bin/env node
// Accessibility check of served pages: open each URL in headless Chromium, take a
// full-page screenshot, run axe-core (WCAG 2.0/2.1 A and AA, plus axe's best practices)
// and print the results as JSON on stdout.
//
// Usage: node a11y.mjs <screenshot-dir> <url> [<url> ...]
//
// Exit status: 0 when no violation is serious or critical, 1 when one is, 2 when the
// check could not run (no browser, a page that does not load, bad arguments).
//
// The browser is the system Chromium (env CHROMIUM_PATH, default /usr/bin/chromium),
// driven by playwright-core: no browser is ever downloaded. Pages behind HTTP Basic (the
// drift sidecar's, whose password is an API key) get A11Y_HTTP_USER and A11Y_HTTP_PASSWORD.

import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";

const require = createRequire(import.meta.url);

const WCAG_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"];
const RUN_TAGS = [...WCAG_TAGS, "best-practice"];
const BLOCKING = new Set(["serious", "critical"]);
const CHROMIUM_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

function fail(message) {
  process.stderr.write(`a11y: ${message}\n`);
  process.exit(2);
}

function screenshotName(index, url) {
  const path = new URL(url).pathname.replace(/\/+$/, "") || "/index";
  const slug = path.replace(/[^A-Za-z0-9_-]+/g, "-").replace(/^-+|-+$/g, "");
  return `${String(index + 1).padStart(2, "0")}-${slug.slice(-80) || "page"}.png`;
}

function summarise(violation) {
  return {
    id: violation.id,
    impact: violation.impact,
    tags: violation.tags,
    help: violation.help,
    helpUrl: violation.helpUrl,
    nodes: violation.nodes.map((node) => ({
      target: node.target,
      html: node.html.slice(0, 300),
      failureSummary: node.failureSummary,
    })),
  };
}

// What axe could not decide alone (for example contrast over an image): counted, with
// its distinct reasons, so that a reader can judge them.
function needsReview(result) {
  const reasons = new Set(
    result.nodes.flatMap((node) => [...node.any, ...node.all, ...node.none].map((c) => c.message)),
  );
  return { id: result.id, impact: result.impact, nodes: result.nodes.length, reasons: [...reasons].slice(0, 5) };
}

async function checkPage(context, axeSource, url, screenshot) {
  const page = await context.newPage();
  const origin = new URL(url).origin;
  const external = [];
  const errors = [];
  page.on("request", (request) => {
    const target = request.url();
    if (!target.startsWith("data:") && new URL(target).origin !== origin) external.push(target);
  });
  page.on("pageerror", (error) => errors.push(String(error)));
  page.on("console", (message) => {
    if (message.type() === "error") errors.push(message.text());
  });
  const response = await page.goto(url, { waitUntil: "load", timeout: 30000 });
  if (!response || !response.ok()) {
    throw new Error(`${url} answered ${response ? response.status() : "nothing"}`);
  }
  await page.screenshot({ path: screenshot, fullPage: true });
  await page.addScriptTag({ content: axeSource });
  const results = await page.evaluate(
    (tags) => window.axe.run(document, { runOnly: { type: "tag", values: tags } }),
    RUN_TAGS,
  );
  const title = await page.title();
  await page.close();
  const violations = results.violations.map(summarise);
  return {
    url,
    title,
    screenshot,
    violations,
    blocking: violations.filter((v) => BLOCKING.has(v.impact)).length,
    passes: results.passes.length,
    incomplete: results.incomplete.map(needsReview),
    externalRequests: external,
    errors,
  };
}

async function main() {
  const [outDir, ...urls] = process.argv.slice(2);
  if (!outDir || urls.length === 0) fail("usage: node a11y.mjs <screenshot-dir> <url> [<url> ...]");
  let chromium;
  let axeSource;
  try {
    ({ chromium } = require("playwright-core"));
    ({ source: axeSource } = require("axe-core"));
  } catch (error) {
    fail(`node modules missing (run npm ci in tests/e2e/browser): ${error.message}`);
  }
  mkdirSync(resolve(outDir), { recursive: true });
  const profile = mkdtempSync(join(tmpdir(), "vigie-a11y-"));
  let context;
  try {
    context = await chromium.launchPersistentContext(profile, {
      executablePath: process.env.CHROMIUM_PATH || "/usr/bin/chromium",
      headless: true,
      args: CHROMIUM_ARGS,
      viewport: { width: 1280, height: 900 },
      timeout: 60000,
      ...(process.env.A11Y_HTTP_PASSWORD
        ? {
            httpCredentials: {
              username: process.env.A11Y_HTTP_USER || "vigie",
              password: process.env.A11Y_HTTP_PASSWORD,
            },
          }
        : {}),
    });
  } catch (error) {
    rmSync(profile, { recursive: true, force: true });
    fail(`cannot start Chromium: ${error.message}`);
  }
  const pages = [];
  let status = 0;
  try {
    for (const [index, url] of urls.entries()) {
      const screenshot = resolve(outDir, screenshotName(index, url));
      pages.push(await checkPage(context, axeSource, url, screenshot));
    }
  } catch (error) {
    process.stderr.write(`a11y: ${error.message}\n`);
    status = 2;
  } finally {
    await context.close();
    rmSync(profile, { recursive: true, force: true });
  }
  const blocking = pages.reduce((sum, page) => sum + page.blocking, 0);
  process.stdout.write(`${JSON.stringify({ tags: RUN_TAGS, blocking, pages }, null, 2)}\n`);
  process.exit(status || (blocking > 0 ? 1 : 0));
}

main().catch((error) => fail(error.stack || String(error)));
