// How to run: tests/it/signin.rs runs it (cargo test --test it signin::); by hand:
//   GATEHOUSE_BROWSER_TOOLS=target/browser-tools node tests/browser/signin.mjs \
//     --service1 http://service1.my-company.com:PORT/dashboard?x=1 \
//     --service2 http://service2.my-company.com:PORT/reports \
//     --email E --password P --screenshot target/signin_page.png
//
// Drives Debian's Chromium through browser sign-in as a person would, with both service hosts
// mapped to 127.0.0.1: open service1 (sent to the sign-in form), a wrong password, the right
// one (back on the page first asked for), service2 without signing in again, then sign out. It
// prints one JSON line of what it saw and asserts nothing: the Rust test judges. Exit 1 only
// when a step could not be done at all (the line then carries `error`).

import { createRequire } from "node:module";
import path from "node:path";
import { parseArgs } from "node:util";

const { values: opts } = parseArgs({
  options: {
    service1: { type: "string" },
    service2: { type: "string" },
    email: { type: "string" },
    password: { type: "string" },
    screenshot: { type: "string" },
  },
});

const tools = process.env.GATEHOUSE_BROWSER_TOOLS || "target/browser-tools";
const require = createRequire(path.resolve(tools, "node_modules") + path.sep);
const { chromium } = require("playwright-core");

const hosts = [opts.service1, opts.service2].map((u) => new URL(u).hostname);
const CHROMIUM_ARGS = [
  "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync",
  `--host-resolver-rules=${hosts.map((h) => `MAP ${h} 127.0.0.1`).join(", ")}`,
];

const findings = { events: { dialogs: [], consoleErrors: [], pageErrors: [] } };

function watch(page) {
  const events = findings.events;
  page.on("dialog", (dialog) => { events.dialogs.push(dialog.message()); dialog.dismiss(); });
  page.on("console", (msg) => {
    if (msg.type() === "error") events.consoleErrors.push(`${msg.text()} @ ${msg.location().url}`);
  });
  page.on("pageerror", (error) => events.pageErrors.push(String(error)));
}

// The test backends answer with a JSON echo of the request they received.
async function echo(page) {
  const text = await page.locator("body").innerText();
  try { return JSON.parse(text); } catch { return { unparsed: text }; }
}

async function flow(browser) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await context.newPage();
  watch(page);

  await page.goto(opts.service1);
  findings.first = {
    url: page.url(),
    hasForm: (await page.locator("form[action='/.gatehouse/signin'] #email").count()) === 1,
  };
  await page.screenshot({ path: opts.screenshot, fullPage: true });

  await page.fill("#email", opts.email);
  await page.fill("#password", "not the password");
  await Promise.all([page.waitForLoadState("load"), page.click("#signin")]);
  findings.wrong = {
    url: page.url(),
    message: (await page.locator("#message").innerText()).trim(),
    emailKept: await page.inputValue("#email"),
  };

  await page.fill("#password", opts.password);
  await Promise.all([page.waitForURL((u) => !u.pathname.startsWith("/.gatehouse/")), page.click("#signin")]);
  const landed = await echo(page);
  const sentCookie = (landed.headers && landed.headers.cookie) || "";
  findings.landed = {
    url: page.url(),
    echo: { path: landed.path, headers: { "x-forwarded-user": landed.headers?.["x-forwarded-user"] } },
    sessionCookieSeenByBackend: sentCookie.includes("gatehouse_session"),
    documentCookie: await page.evaluate(() => document.cookie),
  };
  findings.cookies = (await context.cookies()).map((c) => ({
    name: c.name, domain: c.domain, path: c.path, httpOnly: c.httpOnly, sameSite: c.sameSite,
  }));

  await page.goto(opts.service2);
  const second = await echo(page);
  findings.service2 = {
    url: page.url(),
    echo: { headers: { "x-forwarded-user": second.headers?.["x-forwarded-user"] } },
  };

  // The sign-in page of a signed-in browser offers sign-out.
  await page.goto(new URL("/.gatehouse/signin", opts.service1).href);
  findings.signedInPage = { username: (await page.locator("#username").innerText()).trim() };
  await Promise.all([page.waitForLoadState("load"), page.click("#signout")]);
  findings.signedOut = { url: page.url() };

  await page.goto(opts.service2);
  findings.afterSignOut = { url: page.url() };
  await context.close();
}

let browser;
let exitCode = 0;
try {
  browser = await chromium.launch({
    executablePath: process.env.GATEHOUSE_CHROMIUM || "/usr/bin/chromium",
    args: CHROMIUM_ARGS,
    timeout: 30_000,
  });
  await flow(browser);
} catch (error) {
  findings.error = String(error && error.stack ? error.stack : error);
  exitCode = 1;
} finally {
  if (browser) await browser.close().catch(() => {});
}
console.log(JSON.stringify(findings));
process.exit(exitCode);
