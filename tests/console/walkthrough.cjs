// The console in a real browser (Debian's Chromium, driven by playwright-core): sign in, make
// a key and see its secret once, then nowhere again; a write without the CSRF token is
// refused; no page breaks its content security policy or throws; axe-core finds no serious
// accessibility violation; screenshots of the pages go to SCREENSHOTS.
//
// Run by tests/e2e/console.rs with CONSOLE_URL, EMAIL, PASSWORD, ORG_ID, BROWSER_DIR (where
// playwright-core and axe-core are installed), CHROMIUM and SCREENSHOTS.

const path = require("node:path");
const { createRequire } = require("node:module");

const need = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
};
const url = need("CONSOLE_URL");
const fromBrowserDir = createRequire(path.join(need("BROWSER_DIR"), "node_modules", "x.js"));
const { chromium } = fromBrowserDir("playwright-core");
const axePath = fromBrowserDir.resolve("axe-core/axe.min.js");

function check(condition, message) {
  if (!condition) throw new Error(message);
}

let current = null;

async function main() {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--no-sandbox"],
  });
  const context = await browser.newContext({ viewport: { width: 1100, height: 700 } });
  const page = await context.newPage();
  current = page;
  const problems = [];
  // Chromium reports a CSP violation as a console error ("Refused to ...").
  // The answers this walk provokes on purpose (401 before sign-in and after sign-out, 403 for
  // the forged write) are logged by Chromium as failed loads: those alone are expected.
  const expected = /^Failed to load resource: the server responded with a status of 40[13] /;
  page.on("console", (message) => {
    if (message.type() === "error" && !expected.test(message.text())) {
      problems.push(`console: ${message.text()}`);
    }
  });
  page.on("pageerror", (error) => problems.push(`page: ${error}`));
  const shots = need("SCREENSHOTS");

  await page.goto(url);
  await page.getByRole("heading", { name: "Sign in" }).waitFor();
  await page.screenshot({ path: path.join(shots, "sign-in.png") });
  await page.getByLabel("Email").fill(need("EMAIL"));
  await page.getByLabel("Password").fill(need("PASSWORD"));
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByRole("heading", { name: "Virtual keys" }).waitFor();

  // The session is in an HttpOnly cookie: no script of the page can read it.
  const visible = await page.evaluate(() => document.cookie);
  check(!visible.includes("pcs_"), `the session token is readable by scripts: ${visible}`);

  await page.getByLabel("New key's name").fill("made in a browser");
  await page.getByRole("button", { name: "Create key" }).click();
  const secret = (await page.locator("#new-secret").textContent()).trim();
  check(secret.startsWith("pcv_"), `no secret shown: ${secret}`);
  await page.getByText("shown once").waitFor();
  // The picture keeps no secret: the key is masked.
  await page.screenshot({
    path: path.join(shots, "keys-secret-once.png"),
    mask: [page.locator("#new-secret")],
  });

  // Shown once: after a reload it is on no page, and never in a page's source.
  await page.reload();
  await page.getByRole("heading", { name: "Virtual keys" }).waitFor();
  await page.getByRole("cell", { name: "made in a browser" }).waitFor();
  await page.screenshot({ path: path.join(shots, "keys.png") });
  for (const hash of ["#/keys", "#/members"]) {
    await page.goto(`${url}${hash}`);
    await page.waitForLoadState("networkidle");
    const html = await page.content();
    check(!html.includes(secret), `the secret is on ${hash} again`);
  }
  await page.getByRole("heading", { name: "Members" }).waitFor();
  await page.screenshot({ path: path.join(shots, "members.png") });
  for (const asset of ["", "/app.js", "/app.css"]) {
    const source = await (await page.request.get(`${url}${asset}`)).text();
    check(!source.includes(secret), `the secret is in the source of ${asset || "the page"}`);
  }

  // A write that rides on the cookie alone (as a forged request would) is refused.
  const forged = await page.evaluate(async (org) => {
    const response = await fetch(`/admin/v1/orgs/${org}/teams`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ name: "forged" }),
    });
    return response.status;
  }, need("ORG_ID"));
  check(forged === 403, `a write without the CSRF token answered ${forged}`);

  // Accessibility: axe-core, injected past the page's policy in a context of its own.
  const audit = await browser.newContext({ bypassCSP: true, storageState: await context.storageState() });
  const audited = await audit.newPage();
  for (const hash of ["#/keys", "#/members"]) {
    await audited.goto(`${url}${hash}`);
    await audited.waitForLoadState("networkidle");
    await audited.addScriptTag({ path: axePath });
    const result = await audited.evaluate(() => window.axe.run());
    const serious = result.violations.filter((v) => ["serious", "critical"].includes(v.impact));
    check(serious.length === 0, `${hash}: ${JSON.stringify(serious.map((v) => [v.id, v.help]))}`);
  }
  await audit.close();

  // Signing out is a clean return to sign-in, and the session ends.
  await page.getByRole("button", { name: "Sign out" }).click();
  await page.getByRole("heading", { name: "Sign in" }).waitFor();
  const after = await page.evaluate(async () => (await fetch("/auth/v1/me")).status);
  check(after === 401, `after sign-out /auth/v1/me answered ${after}`);

  check(problems.length === 0, `the browser reported: ${problems.join("; ")}`);
  await browser.close();
  console.log("console walkthrough: ok");
}

main().catch(async (error) => {
  console.error(error);
  // What the page showed when it failed.
  if (current) console.error(await current.locator("main").innerText().catch(() => ""));
  process.exit(1);
});
