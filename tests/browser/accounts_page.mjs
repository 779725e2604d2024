// How to run: tests/it/accounts_page.rs runs it (cargo test --test it accounts_page::); by hand:
//   GATEHOUSE_BROWSER_TOOLS=target/browser-tools node tests/browser/accounts_page.mjs \
//     --url http://127.0.0.1:PORT/accounts_page --email E --password P --search S \
//     --xss-search onerror --screenshot target/accounts_page.png \
//     --mobile-screenshot target/accounts_page_mobile.png [--public-url U] [--forbidden-url U] \
//     [--admin-url U --admin-email E --admin-password P]
//
// Drives Debian's Chromium through the accounts page as a person would (type, click, read) and
// prints one JSON line of what it saw. It asserts nothing itself: the Rust test judges the
// findings, so a failure there names the field that was wrong. Exit 1 only when a step could not
// be done at all (the line then carries `error` and the findings so far).

import { createRequire } from "node:module";
import path from "node:path";
import { parseArgs } from "node:util";

const { values: opts } = parseArgs({
  options: {
    url: { type: "string" },
    email: { type: "string" },
    password: { type: "string" },
    search: { type: "string" },
    "xss-search": { type: "string" },
    screenshot: { type: "string" },
    "mobile-screenshot": { type: "string" },
    "public-url": { type: "string" },
    "forbidden-url": { type: "string" },
    "admin-url": { type: "string" },
    "admin-email": { type: "string" },
    "admin-password": { type: "string" },
  },
});

// playwright-core lives in the tools cache (scripts/install-browser-tools), not in this repo.
const tools = process.env.GATEHOUSE_BROWSER_TOOLS || "target/browser-tools";
const require = createRequire(path.resolve(tools, "node_modules") + path.sep);
const { chromium } = require("playwright-core");

// Without the background-networking flags Chromium keeps dialling Google, which this offline
// machine refuses; --no-sandbox because the tests run as root.
const CHROMIUM_ARGS = [
  "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync",
];

const findings = { events: { dialogs: [], consoleErrors: [], pageErrors: [], foreignRequests: [] } };

// Records what must never happen on any page: dialogs (an XSS payload running), script errors,
// CSP refusals (they arrive as console errors), and requests leaving the page's origin.
function watch(page, origin) {
  const events = findings.events;
  page.on("dialog", (dialog) => { events.dialogs.push(dialog.message()); dialog.dismiss(); });
  page.on("console", (msg) => {
    if (msg.type() === "error") events.consoleErrors.push(`${msg.text()} @ ${msg.location().url}`);
  });
  page.on("pageerror", (error) => events.pageErrors.push(String(error)));
  page.on("request", (request) => {
    if (new URL(request.url()).origin !== origin) events.foreignRequests.push(request.url());
  });
}

const rowCount = (page) => page.locator("#rows tr").count();
const text = (page, selector) => page.locator(selector).innerText();
const column = (page, name) => page.locator(`#rows td.${name}`).allInnerTexts();
const waitFor = (page, predicate, arg) => page.waitForFunction(predicate, arg, { timeout: 10_000 });

async function typeInto(page, selector, value) {
  await page.locator(selector).fill("");
  await page.locator(selector).pressSequentially(value);
}

// The main flow: wrong password, login, list, page, search, XSS row, phone width, logout.
async function mainFlow(browser) {
  const origin = new URL(opts.url).origin;
  const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  watch(page, origin);
  let token = null; // captured from the network only to prove logout revoked it
  page.on("response", async (response) => {
    if (new URL(response.url()).pathname === "/login" && response.status() === 200) {
      token = (await response.json()).access_token;
    }
  });

  await page.goto(opts.url);
  await page.locator("#login").waitFor({ state: "visible" });
  findings.loginFormFirst = await page.locator("#accounts").isHidden();

  await typeInto(page, "#email", opts.email);
  await typeInto(page, "#password", "not the password");
  await page.locator("#login-button").click();
  await page.locator("#login-error").waitFor({ state: "visible" });
  findings.wrongPasswordMessage = await text(page, "#login-error");

  await typeInto(page, "#password", opts.password);
  await page.locator("#login-button").click();
  await page.locator("#rows tr td.username").first().waitFor({ state: "visible" });
  findings.firstPage = {
    rows: await rowCount(page),
    total: await text(page, "#total"),
    pageInfo: await text(page, "#page-info"),
    prevDisabled: await page.locator("#prev").isDisabled(),
    logoutVisible: await page.locator("#logout").isVisible(),
    created: (await column(page, "created"))[0],
    // Not an admin: the audit trail is not offered (and never asked for).
    auditHidden: await page.locator("#audit").isHidden(),
    createdIso: await page.locator("#rows td.created time").first().getAttribute("datetime"),
  };
  findings.storage = await page.evaluate(() => ({
    localStorage: localStorage.length, sessionStorage: sessionStorage.length, cookie: document.cookie,
  }));
  await page.screenshot({ path: opts.screenshot, fullPage: true });

  await page.locator("#next").click();
  await waitFor(page, () => document.getElementById("page-info").textContent.startsWith("Page 2"));
  findings.secondPage = {
    rows: await rowCount(page),
    pageInfo: await text(page, "#page-info"),
    nextDisabled: await page.locator("#next").isDisabled(),
    usernames: await column(page, "username"),
  };

  await typeInto(page, "#search", opts.search);
  await waitFor(page, () => document.getElementById("total").textContent.includes("matching"));
  findings.search = {
    usernames: await column(page, "username"),
    emails: await column(page, "email"),
    total: await text(page, "#total"),
    pageInfo: await text(page, "#page-info"),
  };

  await typeInto(page, "#search", opts["xss-search"]);
  // Wait on the email, not the username: were the username parsed as markup, it would hold no
  // text to wait for, and the findings should say so rather than time out.
  await waitFor(page, (previous) => {
    const cell = document.querySelector("#rows td.email");
    return cell && !cell.textContent.includes(previous);
  }, opts.search);
  await page.waitForTimeout(300); // give an injected onerror the chance to fire, were there one
  findings.xss = {
    usernames: await column(page, "username"),
    imagesInTable: await page.locator("table img").count(),
    imagesInPage: await page.locator("img").count(),
  };

  // Phone width: the whole first page again, laid out as stacked rows.
  await typeInto(page, "#search", "");
  await waitFor(page, () => !document.getElementById("total").textContent.includes("matching"));
  await page.setViewportSize({ width: 375, height: 812 });
  findings.mobile = await page.evaluate(() => ({
    scrollWidth: document.documentElement.scrollWidth,
    viewportWidth: window.innerWidth,
    headerHidden: getComputedStyle(document.querySelector("thead")).display === "none",
  }));
  await page.screenshot({ path: opts["mobile-screenshot"], fullPage: true });
  await page.setViewportSize({ width: 1280, height: 800 });

  await page.locator("#logout").click();
  await page.locator("#login").waitFor({ state: "visible" });
  findings.afterLogout = {
    loginVisible: await page.locator("#login").isVisible(),
    accountsHidden: await page.locator("#accounts").isHidden(),
    rowsLeft: await rowCount(page),
    passwordLeft: await page.locator("#password").inputValue(),
    // The token the page held must be dead on the server too, not just forgotten.
    oldTokenStatus: token
      ? (await fetch(new URL("/accounts", origin), { headers: { Authorization: `Bearer ${token}` } })).status
      : null,
  };
  await page.close();
}

// `accounts_page: public`: the table shows straight away, with nothing to log out of.
async function publicFlow(browser) {
  const page = await browser.newPage();
  watch(page, new URL(opts["public-url"]).origin);
  await page.goto(opts["public-url"]);
  await page.locator("#accounts").waitFor({ state: "visible" });
  findings.public = {
    loginVisible: await page.locator("#login").isVisible(),
    logoutVisible: await page.locator("#logout").isVisible(),
    total: await text(page, "#total"),
  };
  await page.close();
}

// `accounts_page: admin` and an ordinary account: the server's 403 sentence, back at the form.
async function forbiddenFlow(browser) {
  const page = await browser.newPage();
  watch(page, new URL(opts["forbidden-url"]).origin);
  await page.goto(opts["forbidden-url"]);
  await page.locator("#login").waitFor({ state: "visible" });
  await typeInto(page, "#email", opts.email);
  await typeInto(page, "#password", opts.password);
  await page.locator("#login-button").click();
  await page.locator("#login-error").waitFor({ state: "visible" });
  findings.forbidden = {
    message: await text(page, "#login-error"),
    accountsHidden: await page.locator("#accounts").isHidden(),
  };
  await page.close();
}

// An admin sees the audit trail below the accounts, every value as text.
async function adminFlow(browser) {
  const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  watch(page, new URL(opts["admin-url"]).origin);
  await page.goto(opts["admin-url"]);
  await page.locator("#login").waitFor({ state: "visible" });
  await typeInto(page, "#email", opts["admin-email"]);
  await typeInto(page, "#password", opts["admin-password"]);
  await page.locator("#login-button").click();
  await page.locator("#audit-rows tr td.audit-event").first().waitFor({ state: "visible" });
  await page.waitForTimeout(300); // give an injected onerror the chance to fire, were there one
  const cells = (name) => page.locator(`#audit-rows td.${name}`).allInnerTexts();
  findings.audit = {
    visible: await page.locator("#audit").isVisible(),
    events: await cells("audit-event"),
    usernames: await cells("audit-username"),
    clients: await cells("audit-client"),
    details: await cells("audit-detail"),
    info: await text(page, "#audit-info"),
    imagesInAudit: await page.locator("#audit img").count(),
    imagesInPage: await page.locator("img").count(),
  };
  await page.locator("#logout").click();
  await page.locator("#login").waitFor({ state: "visible" });
  findings.audit.hiddenAfterLogout = await page.locator("#audit").isHidden();
  findings.audit.rowsAfterLogout = await page.locator("#audit-rows tr").count();
  await page.close();
}

let browser;
let exitCode = 0;
try {
  browser = await chromium.launch({
    executablePath: process.env.GATEHOUSE_CHROMIUM || "/usr/bin/chromium",
    args: CHROMIUM_ARGS,
    timeout: 30_000,
  });
  await mainFlow(browser);
  if (opts["public-url"]) await publicFlow(browser);
  if (opts["forbidden-url"]) await forbiddenFlow(browser);
  if (opts["admin-url"]) await adminFlow(browser);
} catch (error) {
  findings.error = String(error && error.stack ? error.stack : error);
  exitCode = 1;
} finally {
  if (browser) await browser.close().catch(() => {});
}
console.log(JSON.stringify(findings));
process.exit(exitCode);
