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

  const signIn = async (email, password) => {
    await page.getByRole("heading", { name: "Sign in" }).waitFor();
    await page.getByLabel("Email").fill(email);
    await page.getByLabel("Password").fill(password);
    await page.getByRole("button", { name: "Sign in" }).click();
    await page.getByRole("heading", { name: "Virtual keys" }).waitFor();
  };
  const signOut = async () => {
    await page.getByRole("button", { name: "Sign out" }).click();
    await page.getByRole("heading", { name: "Sign in" }).waitFor();
  };

  await page.goto(url);
  await page.getByRole("heading", { name: "Sign in" }).waitFor();
  await page.screenshot({ path: path.join(shots, "sign-in.png") });
  await signIn(need("EMAIL"), need("PASSWORD"));

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

  // An invitation, its token shown once, accepted in the browser by a new person, who then
  // signs in as a viewer: no write control is enabled, and a forced write is refused anyway.
  await page.goto(`${url}#/members`);
  await page.getByLabel("Invite by email").fill("viewer@e2e.example");
  await page.getByLabel("Role").selectOption("viewer");
  await page.getByRole("button", { name: "Invite" }).click();
  const invite = (await page.locator("#new-invite").textContent()).trim();
  check(invite.startsWith("pci_"), `no invitation token shown: ${invite}`);
  await page.screenshot({ path: path.join(shots, "members.png"), mask: [page.locator("#new-invite")] });
  await signOut();
  await page.getByRole("link", { name: "Accept an invitation" }).click();
  await page.getByLabel("Invitation token").fill(invite);
  await page.getByLabel(/A password/).fill("viewer passphrase 123");
  await page.getByRole("button", { name: "Accept" }).click();
  await page.getByText("Invitation accepted").waitFor();
  await page.getByRole("link", { name: "Sign in" }).click();
  await signIn("viewer@e2e.example", "viewer passphrase 123");
  for (const hash of ["#/keys", "#/members"]) {
    await page.goto(`${url}${hash}`);
    await page.waitForLoadState("networkidle");
    const enabled = await page.locator("main button:enabled, main input:enabled, main select:enabled").count();
    check(enabled === 0, `${hash}: a viewer has ${enabled} enabled write controls`);
  }
  const forcedKey = await page.evaluate(async (org) => {
    const csrf = document.cookie.split("; ").find((c) => c.startsWith("portcullis_csrf="));
    const response = await fetch(`/admin/v1/orgs/${org}/keys`, {
      method: "POST",
      headers: { "content-type": "application/json", "x-csrf-token": csrf.slice("portcullis_csrf=".length) },
      body: JSON.stringify({ name: "forced by a viewer" }),
    });
    return [response.status, (await response.json()).error.code];
  }, need("ORG_ID"));
  check(
    forcedKey[0] === 403 && forcedKey[1] === "permission_denied",
    `a viewer's forced write answered ${forcedKey}`,
  );
  await signOut();

  // The audit page shows each of those actions attributed to the person who did it.
  await signIn(need("EMAIL"), need("PASSWORD"));
  await page.goto(`${url}#/audit`);
  await page.getByText("Chain verified").waitFor();
  for (const [who, action] of [
    [need("EMAIL"), "key.created"],
    [need("EMAIL"), "member.invited"],
    ["viewer@e2e.example", "invite.accepted"],
  ]) {
    const row = page.locator("tr", { has: page.getByRole("cell", { name: action, exact: true }) });
    const actors = await row.locator("td:nth-child(2)").allTextContents();
    check(actors.includes(who), `${action}: by ${actors}, not ${who}`);
  }
  await page.screenshot({ path: path.join(shots, "audit.png") });

  // Accessibility: axe-core, injected past the page's policy in a context of its own.
  const audit = await browser.newContext({ bypassCSP: true, storageState: await context.storageState() });
  const audited = await audit.newPage();
  for (const hash of ["#/keys", "#/members", "#/audit", "#/accept"]) {
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
