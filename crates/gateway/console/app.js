// The Portcullis console: a page over the admin and auth JSON API, with the same guard,
// roles and audit as any other client. The session lives in an HttpOnly cookie; every
// state-changing call carries the CSRF token. Nothing here builds HTML from data: text goes
// in through textContent only.

const ROLES = ["viewer", "member", "admin", "owner"];
const main = document.getElementById("main");
const nav = document.getElementById("nav");
const orgSelect = document.getElementById("org");
const status = document.getElementById("status");

let me = null;
let orgId = null;

class ApiError extends Error {
  constructor(status, body) {
    super(body?.error?.message ?? `HTTP ${status}`);
    this.status = status;
    this.code = body?.error?.code;
  }
}

function csrfToken() {
  const name = "__Host-portcullis_csrf=";
  const pair = document.cookie.split("; ").find((c) => c.startsWith(name));
  return pair ? pair.slice(name.length) : "";
}

async function api(method, path, body) {
  const headers = { "x-portcullis-session": "cookie" };
  if (body !== undefined) headers["content-type"] = "application/json";
  if (method !== "GET") headers["x-csrf-token"] = csrfToken();
  const response = await fetch(path, {
    method,
    headers,
    credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    // Not this API's envelope (a proxy's error page): the status says enough.
  }
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (name === "text") node.textContent = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else if (value === true) node.setAttribute(name, "");
    else if (value !== false && value !== undefined) node.setAttribute(name, value);
  }
  for (const child of children) node.append(child);
  return node;
}

function show(...nodes) {
  main.replaceChildren(...nodes);
  main.focus();
}

function say(text) {
  status.textContent = text;
}

function go(hash) {
  if (location.hash === hash) render();
  else location.hash = hash;
}

function role() {
  return me?.memberships.find((m) => m.org_id === orgId)?.role ?? "viewer";
}

function may(least) {
  return ROLES.indexOf(role()) >= ROLES.indexOf(least);
}

// A click or submit whose failure is shown, not lost; an ended session returns to sign-in.
function guard(handler) {
  return async (...args) => {
    try {
      await handler(...args);
    } catch (error) {
      if (error.status === 401) {
        me = null;
        signIn();
      } else {
        say(error.message);
        alert(error.message);
      }
    }
  };
}

// A page's filters, kept in its address (`page?name=value`): `fields` are [name, label, type].
function filterForm(page, params, fields) {
  return el(
    "form",
    {
      class: "filters",
      onsubmit: (event) => {
        event.preventDefault();
        const chosen = new URLSearchParams();
        for (const input of event.target.querySelectorAll("input")) if (input.value) chosen.set(input.name, input.value);
        go(`${page}?${chosen}`);
      },
    },
    ...fields.map(([name, label, type = "text"]) =>
      el("label", { text: label }, el("input", { name, type, value: params.get(name) ?? "" })),
    ),
    el("button", { type: "submit", text: "Filter" }),
  );
}

// Every page of a listing, oldest first, following its cursor (at most `cap` rows).
async function everything(path, rowsOf, cursorParam, nextOf, cap = 20000) {
  const rows = [];
  let cursor = null;
  for (;;) {
    const separator = path.includes("?") ? "&" : "?";
    const page = await api("GET", cursor === null ? path : `${path}${separator}${cursorParam}=${encodeURIComponent(cursor)}`);
    const got = rowsOf(page);
    rows.push(...got);
    const next = nextOf(page, got);
    if (!got.length || next === null || next === undefined || next === cursor || rows.length >= cap) return rows;
    cursor = next;
  }
}

function errorLine(error) {
  return el("p", { class: "error", role: "alert", text: error.message });
}

// The session cookie is Secure: a browser keeps it only over HTTPS, or on localhost.
const NO_COOKIE =
  "Signed in, but the browser kept no session cookie: open the console over HTTPS (or on localhost).";

// Sign-in: the password, then (when the account has MFA) a TOTP or a recovery code.
function signIn() {
  nav.hidden = true;
  const failed = el("p", { class: "error", role: "alert" });
  const email = el("input", { type: "email", name: "email", autocomplete: "username", required: true });
  const password = el("input", { type: "password", name: "password", autocomplete: "current-password", required: true });
  const form = el(
    "form",
    {
      onsubmit: async (event) => {
        event.preventDefault();
        failed.textContent = "";
        try {
          const answer = await api("POST", "/auth/v1/login", { email: email.value, password: password.value });
          if (answer.mfa_challenge) secondFactor(answer.mfa_challenge);
          else await signedIn();
        } catch (error) {
          failed.textContent = error.message;
          if (error.status === 401 && error.code === "invalid_api_key") failed.textContent = NO_COOKIE;
        }
      },
    },
    el("label", { text: "Email" }, email),
    el("label", { text: "Password" }, password),
    el("button", { type: "submit", text: "Sign in" }),
    failed,
  );
  show(el("h1", { text: "Sign in" }), form, el("p", {}, el("a", { href: "#/accept", text: "Accept an invitation" })));
}

// A new person accepts an invitation with its token and a password of their own; a person
// with an account signs in first and accepts from their session.
function acceptInvitation() {
  nav.hidden = !me;
  const outcome = el("p", { role: "alert" });
  const token = el("input", { name: "invite_token", required: true, autocomplete: "off" });
  const password = el("input", { type: "password", name: "password", autocomplete: "new-password" });
  const form = el(
    "form",
    {
      onsubmit: async (event) => {
        event.preventDefault();
        outcome.className = "";
        try {
          const body = { invite_token: token.value.trim() };
          if (password.value) body.password = password.value;
          await api("POST", "/auth/v1/invites/accept", body);
          outcome.textContent = "Invitation accepted. Sign in to continue.";
          if (me) await signedIn();
        } catch (error) {
          outcome.className = "error";
          outcome.textContent = error.message;
        }
      },
    },
    el("label", { text: "Invitation token" }, token),
    el("label", { text: "A password for your new account (none if you already have one and are signed in)" }, password),
    el("button", { type: "submit", text: "Accept" }),
    outcome,
  );
  show(el("h1", { text: "Accept an invitation" }), form, el("p", {}, el("a", { href: "#/signin", text: "Sign in" })));
}

function secondFactor(challenge) {
  const failed = el("p", { class: "error", role: "alert" });
  const code = el("input", { name: "code", autocomplete: "one-time-code", required: true, inputmode: "text" });
  const form = el(
    "form",
    {
      onsubmit: async (event) => {
        event.preventDefault();
        try {
          await api("POST", "/auth/v1/login/mfa", { mfa_challenge: challenge, code: code.value.trim() });
          await signedIn();
        } catch (error) {
          failed.textContent = error.message;
          if (error.status === 401 && error.code === "invalid_api_key") failed.textContent = NO_COOKIE;
        }
      },
    },
    el("label", { text: "Code from your authenticator app, or a recovery code" }, code),
    el("button", { type: "submit", text: "Verify" }),
    failed,
  );
  show(el("h1", { text: "Second factor" }), form);
  code.focus();
}

async function signedIn() {
  me = await api("GET", "/auth/v1/me");
  orgSelect.replaceChildren(
    ...me.memberships.map((m) => el("option", { value: m.org_id, text: `${m.name} (${m.role})` })),
  );
  orgId = me.memberships[0]?.org_id ?? null;
  nav.hidden = false;
  go("#/keys");
}

// Keys: a secret just made (`shown`) is shown once, here, and never kept by the page.
async function keys(shown) {
  const [list, people, teamList, spent] = await Promise.all([
    api("GET", `/admin/v1/orgs/${orgId}/keys`),
    api("GET", `/admin/v1/orgs/${orgId}/members`),
    api("GET", `/admin/v1/orgs/${orgId}/teams`),
    api("GET", `/admin/v1/orgs/${orgId}/usage?group_by=key`),
  ]);
  const emails = new Map(people.data.filter((m) => m.user_id).map((m) => [m.user_id, m.email]));
  const teamNames = new Map(teamList.data.map((t) => [t.team_id, t.name]));
  const used = new Map(spent.data.map((u) => [u.key_id, u.cost_micro_usd]));
  const canWrite = may("member");
  // A member manages the keys it owns; an admin every key.
  const canManage = (k) => may("admin") || (canWrite && k.owner_user_id === me.user_id);
  const revealed = el("div");
  const name = el("input", { name: "name", required: true, disabled: !canWrite });
  const create = el(
    "form",
    {
      onsubmit: async (event) => {
        event.preventDefault();
        try {
          const key = await api("POST", `/admin/v1/orgs/${orgId}/keys`, { name: name.value });
          await keys(key.secret);
        } catch (error) {
          revealed.replaceChildren(errorLine(error));
        }
      },
    },
    el("label", { text: "New key's name" }, name),
    el("button", { type: "submit", text: "Create key", disabled: !canWrite }),
  );
  const rows = list.data
    .filter((k) => !k.revoked_at)
    .map((k) =>
      el(
        "tr",
        {},
        el("td", { text: k.name }),
        el("td", { text: `…${k.last4}` }),
        el("td", { text: k.owner_user_id ? emails.get(k.owner_user_id) ?? k.owner_user_id : "the org" }),
        el("td", { text: k.team_id ? teamNames.get(k.team_id) ?? k.team_id : "" }),
        el("td", { text: k.budget_micro_usd === null ? `${dollars(used.get(k.key_id) ?? 0)}, no budget` : `${dollars(used.get(k.key_id) ?? 0)} of ${dollars(k.budget_micro_usd)}` }),
        el("td", { text: (k.rotated_at ?? k.created_at).slice(0, 10) }),
        el("td", { text: k.expires_at ? k.expires_at.slice(0, 10) : "never" }),
        el(
          "td",
          {},
          el("button", {
            type: "button",
            class: "secondary",
            text: "Rotate",
            disabled: !canManage(k),
            onclick: guard(async () => {
              const rotated = await api("POST", `/admin/v1/orgs/${orgId}/keys/${k.key_id}/rotate`);
              await keys(rotated.secret);
            }),
          }),
          " ",
          el("button", {
            type: "button",
            class: "secondary",
            text: "Revoke",
            disabled: !canManage(k),
            onclick: guard(async () => {
              if (!confirm(`Revoke ${k.name}? Requests with it stop at once.`)) return;
              await api("DELETE", `/admin/v1/orgs/${orgId}/keys/${k.key_id}`);
              await keys();
              say(`${k.name} revoked`);
            }),
          }),
        ),
      ),
    );
  const table = rows.length
    ? el(
        "table",
        {},
        el("thead", {}, el("tr", {}, ...["Name", "Key", "Owner", "Team", "Spent", "Made or rotated", "Expires", ""].map((h) => el("th", { text: h })))),
        el("tbody", {}, ...rows),
      )
    : el("p", { class: "empty", text: "No keys yet. A key carries an application's requests to the models of this organization." });
  show(el("h1", { text: "Virtual keys" }), create, revealed, table);
  if (shown) reveal(shown);

  function reveal(secret) {
    const code = el("code", { id: "new-secret", text: secret });
    revealed.replaceChildren(
      el(
        "div",
        { class: "secret", role: "alert" },
        el("p", { class: "warning", text: "Copy this key now: it is shown once and cannot be shown again." }),
        code,
        el("button", {
          type: "button",
          text: "Copy",
          onclick: async () => {
            await navigator.clipboard.writeText(secret);
            say("Copied");
          },
        }),
        " ",
        el("button", { type: "button", class: "secondary", text: "Done", onclick: () => revealed.replaceChildren() }),
      ),
    );
  }
}

async function members(shownInvite) {
  const list = await api("GET", `/admin/v1/orgs/${orgId}/members`);
  const canInvite = may("admin");
  const invited = el("div");
  const email = el("input", { type: "email", name: "email", required: true, disabled: !canInvite });
  const roleChoice = el(
    "select",
    { name: "role", "aria-label": "Invited person's role", disabled: !canInvite },
    // What the caller may grant: an owner any role, an admin up to member.
    ...(may("owner") ? ["viewer", "member", "admin", "owner"] : ["viewer", "member"]).map((r) => el("option", { value: r, text: r })),
  );
  const invite = el(
    "form",
    {
      onsubmit: async (event) => {
        event.preventDefault();
        try {
          const made = await api("POST", `/admin/v1/orgs/${orgId}/members`, { email: email.value, role: roleChoice.value });
          await members(made.invite_token);
        } catch (error) {
          invited.replaceChildren(errorLine(error));
        }
      },
    },
    el("label", { text: "Invite by email" }, email),
    el("label", { text: "Role" }, roleChoice),
    el("button", { type: "submit", text: "Invite", disabled: !canInvite }),
  );
  const grantable = may("owner") ? ["viewer", "member", "admin", "owner"] : ["viewer", "member"];
  const base = `/admin/v1/orgs/${orgId}`;
  const actions = (m) => {
    if (m.status === "pending") {
      return el("button", {
        type: "button",
        class: "secondary",
        text: "Revoke invitation",
        disabled: !may("admin"),
        onclick: guard(async () => {
          if (!confirm(`Revoke the invitation of ${m.email}?`)) return;
          await api("DELETE", `${base}/invites/${m.invite_id}`);
          await members();
        }),
      });
    }
    // The API applies the owner rules (the last owner stays; only owners touch owners).
    const mine = m.user_id === me.user_id;
    const changeable = may("admin") && !mine && (m.role !== "owner" || may("owner"));
    const role = el(
      "select",
      { "aria-label": `Role of ${m.email}`, disabled: !changeable },
      ...grantable.concat(grantable.includes(m.role) ? [] : [m.role]).map((r) => el("option", { value: r, text: r })),
    );
    role.value = m.role;
    role.addEventListener(
      "change",
      guard(async () => {
        if (!confirm(`Make ${m.email} ${role.value}?`)) {
          role.value = m.role;
          return;
        }
        await api("PATCH", `${base}/members/${m.user_id}`, { role: role.value });
        await members();
      }),
    );
    const remove = el("button", {
      type: "button",
      class: "secondary",
      text: "Remove",
      disabled: !changeable,
      onclick: guard(async () => {
        if (!confirm(`Remove ${m.email}? Their keys and sessions here end at once.`)) return;
        await api("DELETE", `${base}/members/${m.user_id}`);
        await members();
      }),
    });
    return el("span", {}, role, " ", remove);
  };
  const rows = list.data.map((m) =>
    el(
      "tr",
      {},
      el("td", { text: m.email }),
      el("td", { text: m.role }),
      el("td", { text: m.status === "pending" ? "invited" : "member" }),
      el("td", { text: m.status === "pending" ? "" : m.mfa_enabled ? "on" : "off" }),
      el("td", {}, actions(m)),
    ),
  );
  const table = rows.length
    ? el(
        "table",
        {},
        el("thead", {}, el("tr", {}, ...["Email", "Role", "Status", "MFA", ""].map((h) => el("th", { text: h })))),
        el("tbody", {}, ...rows),
      )
    : el("p", { class: "empty", text: "No members." });
  show(el("h1", { text: "Members" }), invite, invited, table);
  if (shownInvite) {
    invited.replaceChildren(
      el(
        "div",
        { class: "secret", role: "alert" },
        el("p", { class: "warning", text: "Send this invitation token to the person: it is shown once." }),
        el("code", { id: "new-invite", text: shownInvite }),
      ),
    );
  }
}

// The audit trail: every entry with who, from where, and the chain's verification.
async function audit() {
  if (!may("admin")) {
    show(el("h1", { text: "Audit trail" }), el("p", { class: "empty", text: "The audit trail is for owners and admins." }));
    return;
  }
  const [verification, events, people] = await Promise.all([
    api("GET", `/admin/v1/orgs/${orgId}/audit/verify`),
    everything(`/admin/v1/orgs/${orgId}/audit?limit=1000`, (p) => p.events, "after_seq", (p) => p.next_after_seq),
    api("GET", `/admin/v1/orgs/${orgId}/members`),
  ]);
  const page = { events };
  const emails = new Map(people.data.filter((m) => m.user_id).map((m) => [m.user_id, m.email]));
  const who = (e) => (e.actor_type === "user" ? emails.get(e.actor_id) ?? e.actor_id : e.actor_type);
  const state = verification.ok
    ? `Chain verified: ${verification.events_checked} entries, head ${verification.head_hash ?? "(empty)"}`
    : `Chain broken: ${verification.error}`;
  // The newest first on the page; the export holds every entry.
  const params = new URLSearchParams(location.hash.split("?")[1] ?? "");
  const wanted = (e) =>
    (!params.get("actor") || who(e).includes(params.get("actor"))) &&
    (!params.get("action") || e.action === params.get("action")) &&
    (!params.get("target") || `${e.target_type} ${e.target_id}`.includes(params.get("target"))) &&
    (!params.get("from") || e.occurred_at >= params.get("from")) &&
    (!params.get("to") || e.occurred_at.slice(0, 10) <= params.get("to"));
  const filters = filterForm("#/audit", params, [
    ["actor", "Actor"],
    ["action", "Action"],
    ["target", "Target"],
    ["from", "From", "date"],
    ["to", "To", "date"],
  ]);
  const rows = page.events
    .filter(wanted)
    .slice(-500)
    .reverse()
    .map((e) =>
      el(
        "tr",
        {},
        el("td", { text: e.occurred_at.replace("T", " ").slice(0, 19) }),
        el("td", { text: who(e) }),
        el("td", { text: e.action }),
        el("td", { text: `${e.target_type} ${e.target_id}` }),
        el("td", { text: e.client_ip ?? "" }),
        el("td", { text: e.request_id ?? "" }),
      ),
    );
  const lines = page.events.map((e) => JSON.stringify(e)).join("\n");
  const download = el("a", {
    href: URL.createObjectURL(new Blob([lines], { type: "application/jsonl" })),
    download: "audit.jsonl",
    text: "Export as JSON lines",
  });
  show(
    el("h1", { text: "Audit trail" }),
    el("p", { class: verification.ok ? "" : "error", text: state }),
    filters,
    download,
    el(
      "table",
      {},
      el("thead", {}, el("tr", {}, ...["When (UTC)", "Who", "Action", "Target", "IP", "Request"].map((h) => el("th", { text: h })))),
      el("tbody", {}, ...rows),
    ),
  );
}

// Profile: two-factor sign-in (a QR code and the secret, then recovery codes shown once), and
// signing out of every device.
async function profile() {
  me = await api("GET", "/auth/v1/me");
  const sessions = await api("GET", "/auth/v1/sessions");
  const when = (iso) => iso.replace("T", " ").slice(0, 16);
  const sessionRows = sessions.data.map((x) =>
    el(
      "tr",
      {},
      el("td", { text: when(x.created_at) }),
      el("td", { text: when(x.last_seen_at) }),
      el("td", { text: when(x.expires_at) }),
      el("td", { text: x.mfa_verified ? "yes" : "no" }),
      el("td", { text: x.current ? "this one" : "" }),
    ),
  );
  const area = el("div");
  const outcome = el("p", { role: "alert" });
  const fail = (error) => {
    outcome.className = "error";
    outcome.textContent = error.message;
  };
  const everywhere = el("button", {
    type: "button",
    class: "secondary",
    text: "Sign out of all devices",
    onclick: async () => {
      try {
        await api("POST", "/auth/v1/sessions/revoke", {});
      } finally {
        me = null;
        signIn();
      }
    },
  });
  if (me.mfa_enabled) {
    const code = el("input", { name: "code", autocomplete: "one-time-code", required: true });
    area.append(
      el("p", { text: "Two-factor sign-in is on." }),
      el(
        "form",
        {
          onsubmit: async (event) => {
            event.preventDefault();
            try {
              await api("POST", "/auth/v1/mfa/remove", { code: code.value.trim() });
              await profile();
            } catch (error) {
              fail(error);
            }
          },
        },
        el("label", { text: "A current code or a recovery code, to turn it off" }, code),
        el("button", { type: "submit", class: "secondary", text: "Turn off two-factor sign-in" }),
      ),
    );
  } else {
    area.append(
      el("p", { text: "Two-factor sign-in is off." }),
      el("button", {
        type: "button",
        text: "Turn on two-factor sign-in",
        onclick: async () => {
          try {
            enrol(area, await api("POST", "/auth/v1/mfa/enroll", {}));
          } catch (error) {
            fail(error);
          }
        },
      }),
    );
  }
  show(
    el("h1", { text: "Profile" }),
    el("p", { text: me.email }),
    area,
    outcome,
    el("h2", { text: "Sessions" }),
    table(["Began (UTC)", "Last used", "Ends by", "Second factor", ""], sessionRows, "No live session."),
    everywhere,
  );

  function enrol(target, enrolment) {
    const code = el("input", { name: "code", autocomplete: "one-time-code", inputmode: "numeric", required: true });
    target.replaceChildren(
      el("p", { text: "Scan the code with your authenticator app, or type the secret into it; then enter the code it shows." }),
      el("img", { src: `data:image/svg+xml;base64,${btoa(enrolment.qr_svg)}`, alt: "QR code of your two-factor secret", width: "200", height: "200" }),
      el("p", {}, "Secret: ", el("code", { id: "new-totp-secret", text: enrolment.secret })),
      el(
        "form",
        {
          onsubmit: async (event) => {
            event.preventDefault();
            try {
              const confirmed = await api("POST", "/auth/v1/mfa/confirm", { code: code.value.trim() });
              recoveryCodes(target, confirmed.recovery_codes);
            } catch (error) {
              fail(error);
            }
          },
        },
        el("label", { text: "Code from the app" }, code),
        el("button", { type: "submit", text: "Turn on" }),
      ),
    );
    code.focus();
  }

  function recoveryCodes(target, codes) {
    const text = codes.join("\n");
    target.replaceChildren(
      el(
        "div",
        { class: "secret", role: "alert" },
        el("p", { class: "warning", text: "Two-factor sign-in is on. Keep these recovery codes somewhere safe: each works once, and they are shown only now." }),
        el("ol", { id: "recovery-codes" }, ...codes.map((c) => el("li", {}, el("code", { text: c })))),
        el("button", {
          type: "button",
          text: "Copy",
          onclick: async () => {
            await navigator.clipboard.writeText(text);
            say("Copied");
          },
        }),
        " ",
        el("a", {
          href: URL.createObjectURL(new Blob([text], { type: "text/plain" })),
          download: "portcullis-recovery-codes.txt",
          text: "Download",
        }),
        " ",
        el("button", { type: "button", class: "secondary", text: "Done", onclick: () => profile() }),
      ),
    );
  }
}

// Prompts: versions (immutable), a side-by-side diff, and labels moved with a confirmation:
// deploying a version, and rolling back to the one before.
function messagesText(messages) {
  return messages.map((m) => `[${m.role}]\n${m.content}`).join("\n\n");
}

// A line diff (longest common subsequence): each row is [left, right, kind].
const MAX_DIFF_LINES = 2000;

function diffLines(a, b) {
  const x = a.split("\n");
  const y = b.split("\n");
  // The table is lines × lines: past this, the comparison is not drawn.
  if (x.length > MAX_DIFF_LINES || y.length > MAX_DIFF_LINES) return null;
  const table = Array.from({ length: x.length + 1 }, () => new Array(y.length + 1).fill(0));
  for (let i = x.length - 1; i >= 0; i--) {
    for (let j = y.length - 1; j >= 0; j--) {
      table[i][j] = x[i] === y[j] ? table[i + 1][j + 1] + 1 : Math.max(table[i + 1][j], table[i][j + 1]);
    }
  }
  const rows = [];
  let i = 0;
  let j = 0;
  while (i < x.length || j < y.length) {
    if (i < x.length && j < y.length && x[i] === y[j]) rows.push([x[i++], y[j++], "same"]);
    else if (j < y.length && (i === x.length || table[i][j + 1] >= table[i + 1][j])) rows.push(["", y[j++], "added"]);
    else rows.push([x[i++], "", "removed"]);
  }
  return rows;
}

async function prompts() {
  const list = await api("GET", `/admin/v1/orgs/${orgId}/prompts`);
  const canWrite = may("member");
  const failed = el("p", { class: "error", role: "alert" });
  const name = el("input", { name: "name", required: true, disabled: !canWrite });
  const system = el("textarea", { name: "system", rows: "3", disabled: !canWrite });
  const user = el("textarea", { name: "user", rows: "3", required: true, disabled: !canWrite });
  const create = el(
    "form",
    {
      onsubmit: async (event) => {
        event.preventDefault();
        const messages = [];
        if (system.value) messages.push({ role: "system", content: system.value });
        messages.push({ role: "user", content: user.value });
        try {
          await api("POST", `/admin/v1/orgs/${orgId}/prompts`, { name: name.value, messages });
          go(`#/prompts/${encodeURIComponent(name.value)}`);
        } catch (error) {
          failed.textContent = error.message;
        }
      },
    },
    el("label", { text: "New prompt's name" }, name),
    el("label", { text: "System message (optional)" }, system),
    el("label", { text: "User message template" }, user),
    el("button", { type: "submit", text: "Create prompt", disabled: !canWrite }),
    failed,
  );
  const rows = list.data.map((p) =>
    el(
      "tr",
      {},
      el("td", {}, el("a", { href: `#/prompts/${encodeURIComponent(p.name)}`, text: p.name })),
      el("td", { text: Object.entries(p.labels).map(([l, v]) => `${l} → v${v}`).join(", ") || "none" }),
      el("td", { text: p.latest_version ? `v${p.latest_version}` : "" }),
    ),
  );
  const table = rows.length
    ? el(
        "table",
        {},
        el("thead", {}, el("tr", {}, ...["Prompt", "Labels", "Latest"].map((h) => el("th", { text: h })))),
        el("tbody", {}, ...rows),
      )
    : el("p", { class: "empty", text: "No prompts yet. A prompt keeps its versions; labels such as production name the one requests use." });
  show(el("h1", { text: "Prompts" }), create, table);
}

async function prompt(name) {
  const base = `/admin/v1/orgs/${orgId}/prompts/${encodeURIComponent(name)}`;
  const [list, history] = await Promise.all([api("GET", `/admin/v1/orgs/${orgId}/prompts`), api("GET", `${base}/versions`)]);
  const summary = list.data.find((p) => p.name === name);
  const versions = history.versions;
  const canWrite = may("member");
  const canDeploy = may("admin");
  const outcome = el("p", { role: "status" });
  const failed = el("p", { class: "error", role: "alert" });

  const moveLabel = async (label, version) => {
    if (!confirm(`Point ${label} at version ${version} of ${name}? Requests using ${label} get it at once.`)) return;
    try {
      const moved = await api("PUT", `${base}/labels/${encodeURIComponent(label)}`, { version });
      await prompt(name);
      if (moved.previous_version && moved.previous_version !== version) {
        outcomeArea(moved);
      }
    } catch (error) {
      failed.textContent = error.message;
    }
  };

  function outcomeArea(moved) {
    const area = document.getElementById("label-outcome");
    area.replaceChildren(
      el("span", { text: `${moved.label} now points at v${moved.version} (was v${moved.previous_version}). ` }),
      el("button", {
        type: "button",
        class: "secondary",
        text: `Roll back to v${moved.previous_version}`,
        disabled: !canDeploy,
        onclick: () => moveLabel(moved.label, moved.previous_version),
      }),
    );
  }

  const labelName = el("input", { name: "label", value: "production", required: true, disabled: !canDeploy });
  const labelVersion = el(
    "select",
    { name: "version", disabled: !canDeploy },
    ...versions.map((v) => el("option", { value: String(v.version), text: `v${v.version}` })).reverse(),
  );
  const deploy = el(
    "form",
    {
      onsubmit: (event) => {
        event.preventDefault();
        moveLabel(labelName.value, Number(labelVersion.value));
      },
    },
    el("label", { text: "Label" }, labelName),
    el("label", { text: "Version" }, labelVersion),
    el("button", { type: "submit", text: "Move label", disabled: !canDeploy }),
  );

  const latest = versions[versions.length - 1];
  const nextUser = el("textarea", { name: "content", rows: "4", disabled: !canWrite });
  const nextSystem = el("textarea", { name: "system", rows: "2", disabled: !canWrite });
  const systemOf = latest?.messages.find((m) => m.role === "system");
  nextSystem.value = systemOf ? systemOf.content : "";
  nextUser.value = latest?.messages.filter((m) => m.role === "user").map((m) => m.content).join("\n") ?? "";
  const addVersion = el(
    "form",
    {
      onsubmit: async (event) => {
        event.preventDefault();
        const messages = [];
        if (nextSystem.value) messages.push({ role: "system", content: nextSystem.value });
        messages.push({ role: "user", content: nextUser.value });
        try {
          await api("POST", `${base}/versions`, { messages });
          await prompt(name);
        } catch (error) {
          failed.textContent = error.message;
        }
      },
    },
    el("label", { text: "System message" }, nextSystem),
    el("label", { text: "User message template" }, nextUser),
    el("button", { type: "submit", text: "Save as a new version", disabled: !canWrite }),
  );

  const left = el("select", { name: "left", "aria-label": "Compare from" }, ...versions.map((v) => el("option", { value: String(v.version), text: `v${v.version}` })));
  const right = el("select", { name: "right", "aria-label": "Compare to" }, ...versions.map((v) => el("option", { value: String(v.version), text: `v${v.version}` })));
  if (versions.length > 1) left.value = String(versions[versions.length - 2].version);
  if (latest) right.value = String(latest.version);
  const diff = el("div");
  const drawDiff = () => {
    const of = (n) => versions.find((v) => v.version === Number(n));
    const rows = diffLines(messagesText(of(left.value).messages), messagesText(of(right.value).messages));
    if (rows === null) {
      diff.replaceChildren(el("p", { class: "empty", text: `These versions are over ${MAX_DIFF_LINES} lines: too long to compare here.` }));
      return;
    }
    diff.replaceChildren(
      el(
        "table",
        { class: "diff" },
        el("thead", {}, el("tr", {}, el("th", { text: `v${left.value}` }), el("th", { text: `v${right.value}` }))),
        el("tbody", {}, ...rows.map(([a, b, kind]) => el("tr", { class: kind }, el("td", { text: a }), el("td", { text: b })))),
      ),
    );
  };
  left.addEventListener("change", drawDiff);
  right.addEventListener("change", drawDiff);
  const labels = Object.entries(summary?.labels ?? {}).map(([l, v]) => `${l} → v${v}`).join(", ") || "none";
  show(
    el("h1", { text: `Prompt ${name}` }),
    el("p", { id: "labels", text: `Labels: ${labels}` }),
    el("h2", { text: "Deploy" }),
    deploy,
    el("p", { id: "label-outcome", role: "status" }),
    failed,
    outcome,
    el("h2", { text: "Compare versions" }),
    el("p", {}, left, " → ", right),
    diff,
    el("h2", { text: "New version" }),
    addVersion,
  );
  if (versions.length) drawDiff();
}

function dollars(micro) {
  return micro === null || micro === undefined ? "" : `$${(micro / 1e6).toFixed(6)}`;
}

function table(headings, rows, empty) {
  if (!rows.length) return el("p", { class: "empty", text: empty });
  return el(
    "table",
    {},
    el("thead", {}, el("tr", {}, ...headings.map((h) => el("th", { text: h })))),
    el("tbody", {}, ...rows),
  );
}

function download(name, type, text, label) {
  return el("a", { href: URL.createObjectURL(new Blob([text], { type })), download: name, text: label });
}

function csv(rows) {
  const cell = (v) => {
    let text = v === null || v === undefined ? "" : String(v);
    // A spreadsheet must not read a cell as a formula.
    if (/^[=+\-@]/.test(text)) text = `'${text}`;
    return /[",\n]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
  };
  return rows.map((r) => r.map(cell).join(",")).join("\n");
}

// A bar chart drawn as SVG from numbers: no library, nothing inline but attributes.
function bars(points, label) {
  const ns = "http://www.w3.org/2000/svg";
  const width = 640;
  const height = 160;
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", `0 0 ${width} ${height + 20}`);
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", label);
  svg.setAttribute("class", "chart");
  const max = Math.max(1, ...points.map((p) => p.value));
  const step = Math.min(48, width / Math.max(1, points.length));
  points.forEach((p, i) => {
    const bar = document.createElementNS(ns, "rect");
    const h = (p.value / max) * height;
    bar.setAttribute("x", String(i * step + 2));
    bar.setAttribute("y", String(height - h));
    bar.setAttribute("width", String(Math.max(1, step - 4)));
    bar.setAttribute("height", String(h));
    bar.setAttribute("fill", "#1f5fbf");
    const title = document.createElementNS(ns, "title");
    title.textContent = `${p.label}: ${p.text ?? p.value}`;
    bar.append(title);
    svg.append(bar);
  });
  return svg;
}

// Usage: requests, tokens and spend per day, as a chart and a table; the ledger as CSV.
async function usage() {
  const page = await api("GET", `/admin/v1/orgs/${orgId}/usage?group_by=day`);
  const days = page.data.slice().sort((a, b) => (a.day < b.day ? -1 : 1));
  const children = [
    el("h1", { text: "Usage" }),
    el("p", { text: `From ${page.from} to ${page.to}.` }),
  ];
  if (days.length) {
    children.push(el("h2", { text: "Requests per day" }), bars(days.map((d) => ({ label: d.day, value: d.requests })), "Requests per day"));
    children.push(el("h2", { text: "Spend per day" }), bars(days.map((d) => ({ label: d.day, value: d.cost_micro_usd, text: dollars(d.cost_micro_usd) })), "Spend per day"));
  }
  children.push(
    table(
      ["Day", "Requests", "Input tokens", "Output tokens", "Spend"],
      days.map((d) =>
        el("tr", {}, ...[d.day, d.requests, d.input_tokens, d.output_tokens, dollars(d.cost_micro_usd)].map((v) => el("td", { text: String(v) }))),
      ),
      "No requests in this period.",
    ),
  );
  if (may("admin")) {
    const entries = await everything(`/admin/v1/orgs/${orgId}/ledger?limit=1000`, (p) => p.entries, "after", (p) => p.next_after);
    const ledger = { entries };
    const header = ["occurred_at", "request_id", "key_id", "team_id", "model", "target", "input_tokens", "cached_input_tokens", "output_tokens", "reasoning_tokens", "cost_micro_usd", "estimated"];
    const lines = [header, ...ledger.entries.map((e) => header.map((h) => e[h]))];
    children.push(el("h2", { text: "Ledger" }), el("p", {}, download("ledger.csv", "text/csv", csv(lines), `Export ${ledger.entries.length} ledger entries as CSV`)));
  }
  show(...children);
}

// Request logs: metadata always; content only where the org logs content, redacted as stored.
async function logs() {
  if (!may("admin")) {
    show(el("h1", { text: "Request logs" }), el("p", { class: "empty", text: "Request logs are for owners and admins." }));
    return;
  }
  const params = new URLSearchParams(location.hash.split("?")[1] ?? "");
  const query = new URLSearchParams();
  for (const f of ["key_id", "end_user"]) if (params.get(f)) query.set(f, params.get(f));
  query.set("limit", "1000");
  const page = { logs: (await everything(`/admin/v1/orgs/${orgId}/logs?${query}`, (p) => p.logs, "after", (p) => p.next_after, 5000)).reverse() };
  const model = params.get("model") ?? "";
  const status = params.get("status") ?? "";
  const shown = page.logs.filter((l) => (!model || l.model === model) && (!status || String(l.status) === status));
  const filters = filterForm("#/logs", params, [
    ["key_id", "Key id"],
    ["model", "Model"],
    ["status", "Status"],
    ["end_user", "End user"],
  ]);
  const detail = el("div");
  const rows = shown.map((l) =>
    el(
      "tr",
      {},
      el("td", { text: l.created_at.replace("T", " ").slice(0, 19) }),
      el("td", { text: l.endpoint }),
      el("td", { text: l.model }),
      el("td", { text: String(l.status) }),
      el("td", { text: l.end_user ?? "" }),
      el("td", { text: `${l.input_tokens ?? ""} / ${l.output_tokens ?? ""}` }),
      el("td", { text: dollars(l.cost_micro_usd) }),
      el("td", { text: l.guardrail }),
      el(
        "td",
        {},
        el("button", {
          type: "button",
          class: "secondary",
          text: "Detail",
          onclick: guard(async () => {
            const one = await api("GET", `/admin/v1/orgs/${orgId}/logs/${encodeURIComponent(l.request_id)}`);
            detail.replaceChildren(
              el("h2", { text: `Request ${one.request_id}` }),
              one.content
                ? el("pre", { text: `${JSON.stringify(one.content.request, null, 2)}\n\n${one.content.response ?? ""}` })
                : el("p", { class: "empty", text: "No content: this request was logged at level metadata." }),
            );
          }),
        }),
      ),
    ),
  );
  const subject = el("input", { name: "subject", required: true });
  const erase = el(
    "form",
    {
      onsubmit: guard(async (event) => {
        event.preventDefault();
        if (!confirm(`Delete every request log and content of end user ${subject.value}? This cannot be undone.`)) return;
        const done = await api("POST", `/admin/v1/orgs/${orgId}/data-subject-deletions`, { end_user: subject.value });
        say(`Deleted ${done.deleted.request_logs} request logs and ${done.deleted.contents} contents`);
        await logs();
      }),
    },
    el("label", { text: "End user to erase (data-subject deletion)" }, subject),
    el("button", { type: "submit", class: "secondary", text: "Delete their logs" }),
  );
  show(
    el("h1", { text: "Request logs" }),
    filters,
    table(["When (UTC)", "Endpoint", "Model", "Status", "End user", "Tokens in / out", "Cost", "Guardrail", ""], rows, "No requests match."),
    detail,
    el("h2", { text: "Data-subject deletion" }),
    erase,
  );
}

// Settings: what the org's owners and admins decide; the API checks each against the role.
async function settings() {
  const org = await api("GET", `/admin/v1/orgs/${orgId}`);
  const current = org.settings;
  const canChange = may("admin");
  const outcome = el("p", { role: "status" });
  const inputs = {};
  const choice = (name, label, options) => {
    inputs[name] = el("select", { name, disabled: !canChange }, ...options.map((o) => el("option", { value: o, text: o })));
    inputs[name].value = current[name];
    return el("label", { text: label }, inputs[name]);
  };
  const number = (name, label) => {
    inputs[name] = el("input", { type: "number", name, value: String(current[name]), disabled: !canChange });
    return el("label", { text: label }, inputs[name]);
  };
  const flag = (name, label, least = "admin") => {
    inputs[name] = el("input", { type: "checkbox", name, disabled: !may(least) });
    inputs[name].checked = current[name];
    return el("label", { class: "check" }, inputs[name], label);
  };
  const form = el(
    "form",
    {
      onsubmit: async (event) => {
        event.preventDefault();
        const patch = {};
        for (const [name, input] of Object.entries(inputs)) {
          const value = input.type === "checkbox" ? input.checked : input.type === "number" ? Number(input.value) : input.value;
          if (value !== current[name]) patch[name] = value;
        }
        if (!Object.keys(patch).length) {
          outcome.textContent = "Nothing changed.";
          return;
        }
        try {
          await api("PATCH", `/admin/v1/orgs/${orgId}/settings`, patch);
          await settings();
          say(`Saved: ${Object.keys(patch).join(", ")}`);
        } catch (error) {
          outcome.className = "error";
          outcome.textContent = error.message;
        }
      },
    },
    choice("logging_level", "Request logging", ["metadata", "content"]),
    flag("pii_redaction", "Redact personal data in logged content"),
    choice("pii_guardrail", "Personal data in prompts", ["off", "redact", "block"]),
    number("content_retention_days", "Keep logged content (days)"),
    number("ledger_retention_days", "Keep the ledger (days)"),
    flag("require_mfa", "Owners and admins need two-factor sign-in (owners decide)", "owner"),
    number("session_idle_minutes", "End a session idle this long (minutes)"),
    number("session_max_hours", "End any session after (hours)"),
    el("button", { type: "submit", text: "Save settings", disabled: !canChange }),
    outcome,
  );
  show(el("h1", { text: "Settings" }), form);
}

// Teams and their budgets (integer micro-dollars in the API; dollars here).
async function teams() {
  const list = await api("GET", `/admin/v1/orgs/${orgId}/teams`);
  const canChange = may("admin");
  const failed = el("p", { class: "error", role: "alert" });
  const name = el("input", { name: "name", required: true, disabled: !canChange });
  const budget = el("input", { name: "budget", type: "number", min: "0", step: "0.01", disabled: !canChange });
  const period = el("select", { name: "period", disabled: !canChange }, ...["monthly", "total"].map((p) => el("option", { value: p, text: p })));
  const create = el(
    "form",
    {
      onsubmit: async (event) => {
        event.preventDefault();
        const body = { name: name.value };
        if (budget.value !== "") {
          body.budget_micro_usd = Math.round(Number(budget.value) * 1e6);
          body.budget_period = period.value;
        }
        try {
          await api("POST", `/admin/v1/orgs/${orgId}/teams`, body);
          await teams();
        } catch (error) {
          failed.textContent = error.message;
        }
      },
    },
    el("label", { text: "New team's name" }, name),
    el("label", { text: "Budget in dollars (empty: none)" }, budget),
    el("label", { text: "Budget period" }, period),
    el("button", { type: "submit", text: "Create team", disabled: !canChange }),
    failed,
  );
  const rows = list.data.map((t) =>
    el(
      "tr",
      {},
      el("td", { text: t.name }),
      el("td", { text: t.budget_micro_usd === null ? "none" : `${dollars(t.budget_micro_usd)} ${t.budget_period ?? "total"}` }),
      el(
        "td",
        {},
        el("button", {
          type: "button",
          class: "secondary",
          text: "Delete",
          disabled: !canChange,
          onclick: guard(async () => {
            if (!confirm(`Delete team ${t.name}?`)) return;
            await api("DELETE", `/admin/v1/orgs/${orgId}/teams/${t.team_id}`);
            await teams();
          }),
        }),
      ),
    ),
  );
  show(el("h1", { text: "Teams and budgets" }), create, table(["Team", "Budget", ""], rows, "No teams yet. A team groups keys under one budget."));
}

// Providers and routes: a provider key goes in once and never comes back (only its last four
// characters); a route names its targets in order. "Try it" sends one request through a
// route with a virtual key pasted for that call only.
async function routes() {
  const [credentials, list] = await Promise.all([
    api("GET", `/admin/v1/orgs/${orgId}/credentials`),
    api("GET", `/admin/v1/orgs/${orgId}/routes`),
  ]);
  const canChange = may("admin");
  const failed = el("p", { class: "error", role: "alert" });
  const credName = el("input", { name: "credential_name", required: true, disabled: !canChange });
  const kind = el(
    "select",
    { name: "provider", disabled: !canChange },
    ...["openai", "openai_compatible", "azure", "anthropic", "gemini", "mock"].map((p) => el("option", { value: p, text: p })),
  );
  const apiKey = el("input", { name: "api_key", type: "password", autocomplete: "off", required: true, disabled: !canChange });
  const baseUrl = el("input", { name: "base_url", type: "url", disabled: !canChange });
  const addCredential = el(
    "form",
    {
      onsubmit: async (event) => {
        event.preventDefault();
        const body = { name: credName.value, provider: kind.value, api_key: apiKey.value };
        if (baseUrl.value) body.base_url = baseUrl.value;
        try {
          await api("POST", `/admin/v1/orgs/${orgId}/credentials`, body);
          await routes();
        } catch (error) {
          failed.textContent = error.message;
        }
      },
    },
    el("label", { text: "Credential name" }, credName),
    el("label", { text: "Provider" }, kind),
    el("label", { text: "Provider API key (write-only)" }, apiKey),
    el("label", { text: "Base URL (for compatible servers and Azure)" }, baseUrl),
    el("button", { type: "submit", text: "Add credential", disabled: !canChange }),
  );
  const alias = el("input", { name: "alias", required: true, disabled: !canChange });
  const target = el(
    "select",
    { name: "credential", disabled: !canChange },
    ...credentials.data.map((c) => el("option", { value: c.credential_id, text: `${c.name} (${c.provider})` })),
  );
  const model = el("input", { name: "model", required: true, disabled: !canChange });
  const inputPrice = el("input", { name: "input_price", type: "number", min: "0", step: "0.01", disabled: !canChange });
  const outputPrice = el("input", { name: "output_price", type: "number", min: "0", step: "0.01", disabled: !canChange });
  const addRoute = el(
    "form",
    {
      onsubmit: async (event) => {
        event.preventDefault();
        const body = { targets: [{ credential_id: target.value, model: model.value }] };
        if (inputPrice.value !== "" && outputPrice.value !== "") {
          body.input_micro_usd_per_mtok = Math.round(Number(inputPrice.value) * 1e6);
          body.output_micro_usd_per_mtok = Math.round(Number(outputPrice.value) * 1e6);
        }
        try {
          await api("PUT", `/admin/v1/orgs/${orgId}/routes/${encodeURIComponent(alias.value)}`, body);
          await routes();
        } catch (error) {
          failed.textContent = error.message;
        }
      },
    },
    el("label", { text: "Route alias (the model name clients ask for)" }, alias),
    el("label", { text: "Target credential" }, target),
    el("label", { text: "Target model" }, model),
    el("label", { text: "Input price, dollars per million tokens (empty: the price table's)" }, inputPrice),
    el("label", { text: "Output price, dollars per million tokens" }, outputPrice),
    el("button", { type: "submit", text: "Save route", disabled: !canChange || !credentials.data.length }),
  );
  const byId = new Map(credentials.data.map((c) => [c.credential_id, c.name]));
  const credentialRows = credentials.data.map((c) =>
    el("tr", {}, ...[c.name, c.provider, c.base_url ?? "", `…${c.last4}`, c.updated_at.slice(0, 10)].map((v) => el("td", { text: v }))),
  );
  const routeRows = list.data.map((r) =>
    el(
      "tr",
      {},
      el("td", { text: r.alias }),
      el("td", { text: (r.targets ?? []).map((t) => `${byId.get(t.credential_id) ?? t.credential_id}:${t.model}`).join(" → ") }),
      el("td", { text: r.fallback.join(", ") }),
      el("td", { text: r.input_micro_usd_per_mtok === null ? "table" : `${dollars(r.input_micro_usd_per_mtok)} / ${dollars(r.output_micro_usd_per_mtok)}` }),
    ),
  );
  const tryAlias = el("select", { name: "try_alias" }, ...list.data.map((r) => el("option", { value: r.alias, text: r.alias })));
  const tryKey = el("input", { name: "try_key", type: "password", autocomplete: "off", required: true });
  const tryPrompt = el("input", { name: "try_prompt", value: "Say hello.", required: true });
  const answer = el("pre", { id: "try-answer" });
  const tryIt = el(
    "form",
    {
      onsubmit: async (event) => {
        event.preventDefault();
        answer.textContent = "…";
        const response = await fetch("/v1/chat/completions", {
          method: "POST",
          headers: { authorization: `Bearer ${tryKey.value.trim()}`, "content-type": "application/json" },
          body: JSON.stringify({ model: tryAlias.value, messages: [{ role: "user", content: tryPrompt.value }] }),
        });
        const body = await response.json().catch(() => null);
        tryKey.value = "";
        answer.textContent = response.ok
          ? `${response.headers.get("x-portcullis-target") ?? ""}\n${body?.choices?.[0]?.message?.content ?? ""}`
          : `${response.status}: ${body?.error?.message ?? ""}`;
      },
    },
    el("label", { text: "Route" }, tryAlias),
    el("label", { text: "A virtual key, for this call only" }, tryKey),
    el("label", { text: "Prompt" }, tryPrompt),
    el("button", { type: "submit", text: "Send", disabled: !list.data.length }),
  );
  show(
    el("h1", { text: "Providers and routes" }),
    failed,
    el("h2", { text: "Credentials" }),
    table(["Name", "Provider", "Base URL", "Key", "Updated"], credentialRows, "No provider credentials yet."),
    addCredential,
    el("h2", { text: "Routes" }),
    table(["Alias", "Targets", "Fallback", "Price in / out per M tokens"], routeRows, "No routes yet."),
    addRoute,
    el("h2", { text: "Try it" }),
    tryIt,
    answer,
  );
}

// Overview: requests and spend per day, errors and latency of recent requests, and how much
// of each key's and team's budget is spent this period.
async function overview() {
  const usageByDay = await api("GET", `/admin/v1/orgs/${orgId}/usage?group_by=day`);
  const children = [el("h1", { text: "Overview" })];
  const days = usageByDay.data.slice().sort((a, b) => (a.day < b.day ? -1 : 1));
  const sum = (f) => days.reduce((n, d) => n + d[f], 0);
  children.push(
    el("p", { text: `${sum("requests")} requests and ${dollars(sum("cost_micro_usd"))} from ${usageByDay.from} to ${usageByDay.to}.` }),
  );
  if (days.length) {
    children.push(el("h2", { text: "Requests per day" }), bars(days.map((d) => ({ label: d.day, value: d.requests })), "Requests per day"));
    children.push(el("h2", { text: "Spend per day" }), bars(days.map((d) => ({ label: d.day, value: d.cost_micro_usd, text: dollars(d.cost_micro_usd) })), "Spend per day"));
  }
  if (may("admin")) {
    const recent = await api("GET", `/admin/v1/orgs/${orgId}/logs?limit=200`);
    const errors = recent.logs.filter((l) => l.status >= 400).length;
    const latencies = recent.logs.map((l) => l.latency_ms).sort((a, b) => a - b);
    const p = (q) => (latencies.length ? latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))] : 0);
    children.push(
      el("h2", { text: "Recent requests" }),
      el("p", { text: `Of the last ${recent.logs.length}: ${errors} errors; latency p50 ${p(0.5)} ms, p95 ${p(0.95)} ms.` }),
    );
    if (recent.logs.length) {
      children.push(
        bars(
          recent.logs.slice().reverse().map((l) => ({ label: `${l.model} ${l.status}`, value: l.latency_ms, text: `${l.latency_ms} ms` })),
          "Latency of recent requests",
        ),
      );
    }
  }
  const [byKey, keyList, teamList] = await Promise.all([
    api("GET", `/admin/v1/orgs/${orgId}/usage?group_by=key`),
    api("GET", `/admin/v1/orgs/${orgId}/keys`),
    api("GET", `/admin/v1/orgs/${orgId}/teams`),
  ]);
  const spentBy = new Map(byKey.data.map((u) => [u.key_id, u.cost_micro_usd]));
  const burn = (spent, budget) => (budget ? `${dollars(spent)} of ${dollars(budget)} (${Math.round((100 * spent) / budget)}%)` : `${dollars(spent)}, no budget`);
  const keyRows = keyList.data
    .filter((k) => !k.revoked_at)
    .map((k) => el("tr", {}, el("td", { text: k.name }), el("td", { text: burn(spentBy.get(k.key_id) ?? 0, k.budget_micro_usd) })));
  children.push(el("h2", { text: "Budgets" }), table(["Key", "Spent in the period shown"], keyRows, "No keys."));
  if (teamList.data.length) {
    const byTeam = await api("GET", `/admin/v1/orgs/${orgId}/usage?group_by=team`);
    const teamSpent = new Map(byTeam.data.map((u) => [u.team_id, u.cost_micro_usd]));
    const teamRows = teamList.data.map((t) => el("tr", {}, el("td", { text: t.name }), el("td", { text: burn(teamSpent.get(t.team_id) ?? 0, t.budget_micro_usd) })));
    children.push(table(["Team", "Spent in the period shown"], teamRows, "No teams."));
  }
  show(...children);
}

// Compliance: the controls' live state, read through the same API an auditor's script would
// use; each line says what it checked.
async function compliance() {
  if (!may("admin")) {
    show(el("h1", { text: "Compliance" }), el("p", { class: "empty", text: "The compliance page is for owners and admins." }));
    return;
  }
  const [org, people, keyList, credentials, verification] = await Promise.all([
    api("GET", `/admin/v1/orgs/${orgId}`),
    api("GET", `/admin/v1/orgs/${orgId}/members`),
    api("GET", `/admin/v1/orgs/${orgId}/keys`),
    api("GET", `/admin/v1/orgs/${orgId}/credentials`),
    api("GET", `/admin/v1/orgs/${orgId}/audit/verify`),
  ]);
  const days = (iso) => Math.floor((Date.now() - Date.parse(iso)) / 86400000);
  const privileged = people.data.filter((m) => m.status === "active" && (m.role === "owner" || m.role === "admin"));
  const withoutMfa = privileged.filter((m) => !m.mfa_enabled);
  const live = keyList.data.filter((k) => !k.revoked_at);
  const oldKeys = live.filter((k) => days(k.rotated_at ?? k.created_at) > 90);
  const neverExpiring = live.filter((k) => !k.expires_at);
  const oldCredentials = credentials.data.filter((c) => days(c.updated_at) > 90);
  const settings = org.settings;
  const line = (control, ok, text) =>
    el("tr", {}, el("td", { text: control }), el("td", { class: ok ? "" : "error", text: ok ? "holds" : "needs attention" }), el("td", { text }));
  const rows = [
    line("AU-3 audit chain", verification.ok, verification.ok ? `${verification.events_checked} entries verified; head ${verification.head_hash ?? "(empty)"}` : `broken: ${verification.error}`),
    line("AC-4 MFA of owners and admins", withoutMfa.length === 0, withoutMfa.length ? `without MFA: ${withoutMfa.map((m) => m.email).join(", ")}` : `all ${privileged.length} have MFA`),
    line("AC-4 require_mfa", settings.require_mfa, settings.require_mfa ? "on: privileged actions need a verified second factor" : "off"),
    line("AC-5 key age", oldKeys.length === 0, oldKeys.length ? `not rotated in 90 days: ${oldKeys.map((k) => k.name).join(", ")}` : `${live.length} live keys, each rotated or made within 90 days`),
    line("AC-5 key expiry", neverExpiring.length === 0, neverExpiring.length ? `${neverExpiring.length} keys never expire` : "every key expires"),
    line("EN-2 provider credentials", oldCredentials.length === 0, oldCredentials.length ? `not rotated in 90 days: ${oldCredentials.map((c) => c.name).join(", ")}` : `${credentials.data.length} credentials, each rotated within 90 days`),
    line("RM-1 request logging", settings.logging_level === "metadata" || settings.pii_redaction, `level ${settings.logging_level}${settings.pii_redaction ? ", personal data redacted" : ""}; content kept ${settings.content_retention_days} days`),
    line("CF-3 guardrail", settings.pii_guardrail !== "off", `personal data in prompts: ${settings.pii_guardrail}`),
    line("AC-3 tenant isolation", true, "row-level security, forced; the gateway does not start as a role that could bypass it"),
  ];
  show(
    el("h1", { text: "Compliance" }),
    el("p", { text: "The controls' state now, for this organization. The evidence report of a release is `cargo xtask compliance`." }),
    table(["Control", "State", "What was checked"], rows, ""),
  );
}

const pages = {
  "#/compliance": compliance,
  "#/overview": overview,
  "#/keys": () => keys(),
  "#/members": () => members(),
  "#/teams": teams,
  "#/routes": routes,
  "#/prompts": prompts,
  "#/usage": usage,
  "#/logs": logs,
  "#/settings": settings,
  "#/audit": audit,
  "#/profile": profile,
};

async function render() {
  if (location.hash === "#/accept") return acceptInvitation();
  if (!me) {
    try {
      await signedInAlready();
    } catch {
      return signIn();
    }
  }
  let promptName = null;
  if (location.hash.startsWith("#/prompts/")) {
    try {
      promptName = decodeURIComponent(location.hash.slice(10));
    } catch {
      promptName = "";
    }
  }
  const page = promptName ? () => prompt(promptName) : pages[location.hash.split("?")[0]] ?? (() => keys());
  try {
    await page();
  } catch (error) {
    // An ended or timed-out session is a clean return to sign-in, not an error page.
    if (error.status === 401) {
      me = null;
      signIn();
    } else {
      show(errorLine(error));
    }
  }
}

async function signedInAlready() {
  me = await api("GET", "/auth/v1/me");
  orgSelect.replaceChildren(
    ...me.memberships.map((m) => el("option", { value: m.org_id, text: `${m.name} (${m.role})` })),
  );
  orgId = orgId ?? me.memberships[0]?.org_id ?? null;
  nav.hidden = false;
}

orgSelect.addEventListener("change", () => {
  orgId = orgSelect.value;
  render();
});

document.getElementById("sign-out").addEventListener("click", async () => {
  try {
    await api("POST", "/auth/v1/logout");
  } finally {
    me = null;
    go("#/signin");
  }
});

window.addEventListener("hashchange", render);
render();
