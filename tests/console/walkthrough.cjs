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

// The code an authenticator app shows now for a base32 `secret` (RFC 6238: SHA-1, 6 digits,
// 30 s), as a person's phone would compute it. Test-only: the gateway checks codes with totp-rs.
function totp(secret) {
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
  let bits = "";
  for (const c of secret.replace(/=+$/, "")) bits += alphabet.indexOf(c).toString(2).padStart(5, "0");
  const key = Buffer.from(bits.match(/.{8}/g).map((b) => parseInt(b, 2)));
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(Math.floor(Date.now() / 1000 / 30)));
  const mac = require("node:crypto").createHmac("sha1", key).update(counter).digest();
  const offset = mac[mac.length - 1] & 0xf;
  const value = (mac.readUInt32BE(offset) & 0x7fffffff) % 1_000_000;
  return value.toString().padStart(6, "0");
}

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
    await page.getByRole("button", { name: "Sign out", exact: true }).click();
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
    return [response.status, (await response.json()).error.code];
  }, need("ORG_ID"));
  check(forged[0] === 403 && forged[1] === "csrf_failed", `a write without the CSRF token answered ${forged}`);

  // An invitation, its token shown once, accepted in the browser by a new person, who then
  // signs in as a viewer: no write control is enabled, and a forced write is refused anyway.
  await page.goto(`${url}#/members`);
  await page.getByLabel("Invite by email").fill("viewer@e2e.example");
  await page.getByLabel("Invited person's role").selectOption("viewer");
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
    const csrf = document.cookie.split("; ").find((c) => c.startsWith("__Host-portcullis_csrf="));
    const response = await fetch(`/admin/v1/orgs/${org}/keys`, {
      method: "POST",
      headers: { "content-type": "application/json", "x-csrf-token": csrf.slice("__Host-portcullis_csrf=".length) },
      body: JSON.stringify({ name: "forced by a viewer" }),
    });
    return [response.status, (await response.json()).error.code];
  }, need("ORG_ID"));
  check(
    forcedKey[0] === 403 && forcedKey[1] === "permission_denied",
    `a viewer's forced write answered ${forcedKey}`,
  );
  await signOut();

  // A prompt deployed and rolled back: a label moved to a new version with a confirmation,
  // then back to the one before.
  await signIn(need("EMAIL"), need("PASSWORD"));
  page.on("dialog", (dialog) => dialog.accept());
  await page.goto(`${url}#/prompts`);
  await page.getByLabel("New prompt's name").fill("greeting");
  await page.getByLabel("User message template").fill("Say hello to {{ name }}.");
  await page.getByRole("button", { name: "Create prompt" }).click();
  await page.getByRole("heading", { name: "Prompt greeting" }).waitFor();
  await page.getByRole("button", { name: "Move label" }).click();
  await page.getByText("Labels: production → v1").waitFor();
  await page.getByLabel("User message template").fill("Say hello to {{ name }}, warmly.");
  await page.getByRole("button", { name: "Save as a new version" }).click();
  await page.getByLabel("Version").selectOption("2");
  await page.getByRole("button", { name: "Move label" }).click();
  await page.getByText("Labels: production → v2").waitFor();
  await page.locator("table.diff tr.added").first().waitFor();
  await page.screenshot({ path: path.join(shots, "prompt-deploy.png") });
  await page.getByRole("button", { name: "Roll back to v1" }).click();
  await page.getByText("Labels: production → v1").waitFor();

  // Traffic with the key made above (route `chat` to the mock provider), then the usage,
  // logs and settings pages.
  const origin = new URL(url).origin;
  for (let i = 0; i < 3; i++) {
    const sent = await fetch(`${origin}/v1/chat/completions`, {
      method: "POST",
      headers: { authorization: `Bearer ${secret}`, "content-type": "application/json" },
      body: JSON.stringify({ model: "chat", messages: [{ role: "user", content: "hello" }] }),
    });
    check(sent.status === 200, `a request with the new key answered ${sent.status}`);
  }
  await page.goto(`${url}#/teams`);
  await page.getByLabel("New team's name").fill("research");
  await page.getByLabel(/Budget in dollars/).fill("5");
  await page.getByRole("button", { name: "Create team" }).click();
  await page.getByRole("cell", { name: "$5.000000 monthly" }).waitFor();
  await page.goto(`${url}#/routes`);
  await page.getByRole("cell", { name: "chat", exact: true }).waitFor();
  await page.getByLabel("A virtual key, for this call only").fill(secret);
  await page.getByRole("button", { name: "Send" }).click();
  await page.locator("#try-answer", { hasText: "mock provider" }).waitFor();
  check((await page.getByLabel("A virtual key, for this call only").inputValue()) === "", "the pasted key stayed in the form");
  await page.screenshot({ path: path.join(shots, "routes.png"), mask: [page.locator("input[type=password]")] });
  await page.goto(`${url}#/usage`);
  await page.getByRole("img", { name: "Requests per day" }).waitFor();
  await page.screenshot({ path: path.join(shots, "usage.png") });
  await page.goto(`${url}#/overview`);
  await page.getByRole("img", { name: "Latency of recent requests" }).waitFor();
  await page.getByRole("cell", { name: "made in a browser" }).waitFor();
  await page.screenshot({ path: path.join(shots, "overview.png") });
  await page.goto(`${url}#/logs`);
  await page.getByRole("heading", { name: "Request logs" }).waitFor();
  await page.getByRole("cell", { name: "chat", exact: true }).first().waitFor();
  await page.getByRole("button", { name: "Detail" }).first().click();
  await page.getByText("logged at level metadata").waitFor();
  await page.screenshot({ path: path.join(shots, "logs.png") });
  await page.goto(`${url}#/settings`);
  await page.getByLabel("Personal data in prompts").selectOption("redact");
  await page.getByRole("button", { name: "Save settings" }).click();
  await page.getByText("Saved: pii_guardrail").waitFor();
  await page.screenshot({ path: path.join(shots, "settings.png") });

  // The audit page shows each of those actions attributed to the person who did it.
  await page.goto(`${url}#/audit`);
  await page.getByText("Chain verified").waitFor();
  for (const [who, action] of [
    [need("EMAIL"), "key.created"],
    [need("EMAIL"), "member.invited"],
    [need("EMAIL"), "prompt.label_moved"],
    [need("EMAIL"), "settings.changed"],
    [need("EMAIL"), "team.created"],
    ["viewer@e2e.example", "invite.accepted"],
  ]) {
    const row = page.locator("tr", { has: page.getByRole("cell", { name: action, exact: true }) });
    const actors = await row.locator("td:nth-child(2)").allTextContents();
    check(actors.includes(who), `${action}: by ${actors}, not ${who}`);
  }
  await page.screenshot({ path: path.join(shots, "audit.png") });
  // Filtered by actor and action, the trail keeps only the viewer's acceptance.
  await page.getByLabel("Actor").fill("viewer@e2e.example");
  await page.getByLabel("Action").fill("invite.accepted");
  await page.getByRole("button", { name: "Filter" }).click();
  await page.waitForFunction(() => document.querySelectorAll("main tbody tr").length === 1);
  await page.goto(`${url}#/compliance`);
  await page.getByRole("cell", { name: "AU-3 audit chain" }).waitFor();
  const chain = await page.locator("tr", { has: page.getByRole("cell", { name: "AU-3 audit chain" }) }).locator("td:nth-child(2)").textContent();
  check(chain === "holds", `the audit chain's state reads ${chain}`);
  await page.screenshot({ path: path.join(shots, "compliance.png") });

  // Two-factor sign-in: enrolled from the profile (a QR code and the secret, then recovery
  // codes shown once), then a sign-in that needs the second factor (a recovery code here).
  await page.goto(`${url}#/profile`);
  await page.getByRole("cell", { name: "this one" }).waitFor();
  await page.getByRole("button", { name: "Turn on two-factor sign-in" }).click();
  const seed = (await page.locator("#new-totp-secret").textContent()).trim();
  await page.getByRole("img", { name: /QR code/ }).waitFor();
  await page.getByLabel("Code from the app").fill(totp(seed));
  await page.getByRole("button", { name: "Turn on", exact: true }).click();
  await page.locator("#recovery-codes").waitFor();
  const codes = await page.locator("#recovery-codes li").allTextContents();
  check(codes.length === 10, `${codes.length} recovery codes shown`);
  await page.screenshot({ path: path.join(shots, "profile-recovery-codes.png"), mask: [page.locator("#recovery-codes")] });
  await page.getByRole("button", { name: "Done" }).click();
  await page.getByText("Two-factor sign-in is on.", { exact: true }).waitFor();
  const profileHtml = await page.content();
  check(!profileHtml.includes(seed) && !codes.some((c) => profileHtml.includes(c.trim())), "the seed or a recovery code is still on the page");
  await signOut();
  await page.getByLabel("Email").fill(need("EMAIL"));
  await page.getByLabel("Password").fill(need("PASSWORD"));
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByRole("heading", { name: "Second factor" }).waitFor();
  await page.getByLabel(/recovery code/).fill(codes[0].trim());
  await page.getByRole("button", { name: "Verify" }).click();
  await page.getByRole("heading", { name: "Virtual keys" }).waitFor();

  // Accessibility: axe-core, injected past the page's policy in a context of its own.
  const audit = await browser.newContext({ bypassCSP: true, storageState: await context.storageState() });
  const audited = await audit.newPage();
  for (const hash of ["#/compliance", "#/overview", "#/keys", "#/members", "#/teams", "#/routes", "#/prompts", "#/prompts/greeting", "#/usage", "#/logs", "#/settings", "#/audit", "#/profile", "#/accept"]) {
    await audited.goto(`${url}${hash}`);
    await audited.waitForLoadState("networkidle");
    await audited.addScriptTag({ path: axePath });
    const result = await audited.evaluate(() => window.axe.run());
    const serious = result.violations.filter((v) => ["serious", "critical"].includes(v.impact));
    check(serious.length === 0, `${hash}: ${JSON.stringify(serious.map((v) => [v.id, v.help]))}`);
  }
  await audit.close();

  // Signing out is a clean return to sign-in, and the session ends.
  await page.getByRole("button", { name: "Sign out", exact: true }).click();
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
