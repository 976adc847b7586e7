// synapse-admin (the operators' admin web UI, release 0.11.4, vendored as built) in headless
// Chromium against a real Myelin: a server administrator signs in on its login page, sees
// the users list, then opens the rooms list; both come from Myelin's Synapse-compatible
// admin API (/_synapse/admin/v2/users, /_synapse/admin/v1/rooms).

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";

import { chromium } from "playwright-core";

import { CHROMIUM, CHROMIUM_ARGS, screenshotDir } from "../lib/browser.js";
import { api, myelinBin, registerUser, startMyelin } from "../../shared/myelin.js";
import { SYNAPSE_ADMIN_DIST, serveSynapseAdmin } from "../lib/synapse-admin-site.js";

// The release's index.html sets its footer's version from a build-time constant its own
// build no longer defines, so this inline script throws in every copy of 0.11.4; the app
// itself is a separate module and does not depend on it.
const KNOWN_UPSTREAM_PAGE_ERRORS = [/__SYNAPSE_ADMIN_VERSION__ is not defined/];

/** `myelin user create NAME --admin`, through the running server's admin socket. */
function createAdmin(server, name, password) {
    const args = [
        "user", "create", name, "--admin", "--password-stdin", "--json",
        "--config", join(server.dir, "myelin.toml"),
        "--data-dir", join(server.dir, "data"),
    ];
    const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("MYELIN_")));
    return new Promise((resolve, reject) => {
        const child = spawn(myelinBin(), args, { env, stdio: ["pipe", "pipe", "pipe"] });
        let out = "";
        let err = "";
        child.stdout.on("data", (c) => (out += c));
        child.stderr.on("data", (c) => (err += c));
        child.once("error", reject);
        child.once("exit", (code) =>
            code === 0 ? resolve(out) : reject(new Error(`myelin ${args.slice(0, 4).join(" ")} exited ${code}: ${err}${out}`)),
        );
        child.stdin.end(`${password}\n`);
    });
}

test("synapse-admin: an administrator signs in, lists users, lists rooms", async (t) => {
    const started = Date.now();
    assert.ok(existsSync(CHROMIUM), `${CHROMIUM} missing: apt-get install -y chromium (spec-tests/clients/run does)`);
    assert.ok(existsSync(join(SYNAPSE_ADMIN_DIST, "index.html")), `synapse-admin's build missing at ${SYNAPSE_ADMIN_DIST}`);
    const shots = screenshotDir("synapse-admin");
    t.diagnostic(`screenshots: ${shots}`);
    process.stderr.write(`synapse-admin screenshots: ${shots}\n`);

    const server = await startMyelin(t);
    const hs = server.baseUrl;
    const seen = { badResponses: [], offMachine: [], pageErrors: [], consoleErrors: [], adminRequests: [] };
    let page = null;
    let shotIndex = 0;
    const shoot = async (label) => {
        const file = join(shots, `${String(++shotIndex).padStart(2, "0")}-${label}.png`);
        await page.screenshot({ path: file, fullPage: true });
        return file;
    };
    const step = async (name, fn) => {
        try {
            return await fn();
        } catch (error) {
            const lines = [`step "${name}" failed: ${error?.message ?? error}`];
            for (const r of seen.badResponses) lines.push(`  homeserver answered ${r}`);
            for (const r of seen.offMachine) lines.push(`  blocked request off this machine: ${r}`);
            for (const e of seen.pageErrors) lines.push(`  page error ${e}`);
            for (const e of seen.consoleErrors.slice(-10)) lines.push(`  console error ${e}`);
            lines.push(`  admin API requests: ${seen.adminRequests.join(", ") || "none"}`);
            if (page) await shoot("FAILED").then((f) => lines.push(`  screenshot ${f}`), () => {});
            lines.push(`server log ${server.logPath} (KEEP_TMP=1 keeps it); last lines:`, server.logTail(25));
            throw new Error(lines.join("\n"), { cause: error });
        }
    };

    // Set-up before any browser: an administrator made with the CLI, two ordinary users
    // and two rooms, one of them public, with an alias, in the room directory.
    const password = "synapse-admin test password";
    const { admin, bob, carol } = await step("set up an admin, users and rooms", async () => {
        await createAdmin(server, "boss", password);
        const { user_id: adminId, access_token: adminToken } = await api(hs, null, "POST", "/_matrix/client/v3/login", {
            type: "m.login.password",
            identifier: { type: "m.id.user", user: "boss" },
            password,
        });
        const bob = await registerUser(hs, "bob", { login: true });
        const carol = await registerUser(hs, "carol");
        await api(hs, adminToken, "POST", "/_matrix/client/v3/createRoom", {
            preset: "private_chat",
            name: "Operators lounge",
            invite: [bob.userId],
        });
        await api(hs, bob.accessToken, "POST", "/_matrix/client/v3/createRoom", {
            preset: "public_chat",
            visibility: "public",
            name: "Town square",
            room_alias_name: "town-square",
        });
        return { admin: { userId: adminId }, bob, carol };
    });

    const site = await step("serve synapse-admin", () => serveSynapseAdmin(t, hs));

    const browser = await step("launch Chromium", () =>
        chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS }),
    );
    t.after(() => browser.close());
    const context = await browser.newContext({ viewport: { width: 1280, height: 800 }, locale: "en-US" });
    // Nothing leaves the machine: the page may talk to its own server and to Myelin only.
    await context.route("**/*", (route) => {
        const url = new URL(route.request().url());
        if (url.hostname === "127.0.0.1") return route.continue();
        seen.offMachine.push(route.request().url());
        return route.abort();
    });
    page = await context.newPage();
    page.on("pageerror", (e) => {
        const text = String(e?.stack ?? e);
        if (!KNOWN_UPSTREAM_PAGE_ERRORS.some((re) => re.test(text))) seen.pageErrors.push(text);
    });
    page.on("console", (m) => {
        if (m.type() === "error") seen.consoleErrors.push(m.text());
    });
    page.on("request", (r) => {
        if (r.url().startsWith(`${hs}/_synapse/admin/`)) {
            const url = new URL(r.url());
            seen.adminRequests.push(`${r.method()} ${url.pathname}`);
        }
    });
    page.on("response", (r) => {
        if (r.url().startsWith(hs) && r.status() >= 400) {
            const url = new URL(r.url());
            seen.badResponses.push(`${r.request().method()} ${url.pathname}${url.search} → ${r.status()}`);
        }
    });
    page.on("requestfailed", (r) => {
        if (r.url().startsWith(hs)) {
            seen.badResponses.push(`${r.method()} ${new URL(r.url()).pathname} → ${r.failure()?.errorText}`);
        }
    });

    // How many yes marks (react-admin's BooleanField) the list row holding `text` shows.
    const trueMarks = (text) =>
        page
            .getByRole("row")
            .filter({ has: page.getByRole("cell", { name: text, exact: true }) })
            .locator('[data-testid="true"]')
            .count();

    let serverVersionShown = false;
    await step("the login page offers only this Myelin and shows its version", async () => {
        await page.goto(`${site}/`);
        await page.waitForURL("**/#/login", { timeout: 30_000 });
        await page.getByLabel("Homeserver URL").waitFor({ timeout: 10_000 });
        assert.equal(await page.getByLabel("Homeserver URL").inputValue(), hs);
        // From GET /_matrix/client/versions, asked without a token.
        await page.locator(".matrixVersions").getByText(/v1\.\d+/).waitFor({ timeout: 10_000 });
        // From GET /_synapse/admin/v1/server_version, also asked without a token (Synapse
        // answers it to anyone); checked at the end, so a gap here hides nothing after it.
        serverVersionShown = await page
            .locator(".serverVersion")
            .getByText("Myelin")
            .waitFor({ timeout: 5_000 })
            .then(() => true, () => false);
        await shoot("login-page");
    });

    await step("sign in as the administrator (POST /_matrix/client/r0/login)", async () => {
        await page.getByLabel("Username").fill("boss");
        await page.locator('input[name="password"]').fill(password);
        await page.getByRole("button", { name: "Sign in", exact: true }).click();
        await page.waitForURL("**/#/users**", { timeout: 15_000 });
    });

    await step("the users list shows every local user (GET /_synapse/admin/v2/users)", async () => {
        await page.getByRole("heading", { name: "Users" }).waitFor({ timeout: 15_000 });
        for (const userId of [admin.userId, bob.userId, carol.userId]) {
            await page.getByRole("cell", { name: userId, exact: true }).waitFor({ timeout: 15_000 });
        }
        // The total comes from the answer's `total`.
        await page.getByText("1-3 of 3").waitFor({ timeout: 5_000 });
        // "Server Administrator" is the only yes/no column that is true for boss, and none is
        // for bob (the answer's `admin`, `is_guest`, `deactivated`, `locked`, `erased`).
        assert.equal(await trueMarks(admin.userId), 1, `${admin.userId} is not shown as an administrator`);
        assert.equal(await trueMarks(bob.userId), 0, `${bob.userId} is shown with a yes somewhere`);
        await shoot("users");
    });

    await step("the rooms list shows both rooms (GET /_synapse/admin/v1/rooms)", async () => {
        await page.getByRole("menuitem", { name: "Rooms" }).click();
        await page.waitForURL("**/#/rooms**", { timeout: 10_000 });
        await page.getByRole("heading", { name: "Rooms" }).waitFor({ timeout: 15_000 });
        for (const name of ["Operators lounge", "Town square"]) {
            await page.getByRole("cell", { name, exact: true }).waitFor({ timeout: 15_000 });
        }
        // The total comes from the answer's `total_rooms`.
        await page.getByText("1-2 of 2").waitFor({ timeout: 5_000 });
        // "Visible in room directory" (the answer's `public`) is yes for the published room only.
        assert.equal(await trueMarks("Town square"), 1, "Town square is not shown as in the room directory");
        assert.equal(await trueMarks("Operators lounge"), 0, "Operators lounge is shown with a yes somewhere");
        await shoot("rooms");
    });

    await step("the login page showed Myelin's version (GET /_synapse/admin/v1/server_version)", async () => {
        assert.ok(serverVersionShown, "the login page showed no server version");
    });

    await step("no homeserver request failed and the page raised no error", async () => {
        assert.deepEqual(seen.badResponses, [], "homeserver requests that failed");
        assert.deepEqual(seen.pageErrors, [], "uncaught page errors");
        assert.deepEqual(seen.offMachine, [], "requests to anywhere but this machine");
    });
    t.diagnostic(`admin API requests: ${[...new Set(seen.adminRequests)].join(", ")}`);
    t.diagnostic(`took ${((Date.now() - started) / 1000).toFixed(1)} s`);
});
