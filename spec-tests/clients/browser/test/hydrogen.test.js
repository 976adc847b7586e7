// Hydrogen (hydrogen-view-sdk) in headless Chromium against a real Myelin: two users in two
// browser contexts log in with Hydrogen, open a room they share in Hydrogen's own RoomView,
// and talk through its composer; each sees the other's message appear in the timeline DOM.

import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";

import { chromium } from "playwright-core";

import { CHROMIUM, CHROMIUM_ARGS, screenshotDir } from "../lib/browser.js";
import { api, registerUser, startMyelin } from "../../shared/myelin.js";
import { buildPage, serveSite } from "../lib/site.js";

/** One user's browser context and page, with what it saw go wrong. */
async function openUser(browser, name, homeserver) {
    const context = await browser.newContext({ viewport: { width: 900, height: 640 } });
    const page = await context.newPage();
    const seen = { name, page, context, badResponses: [], pageErrors: [], consoleErrors: [] };
    page.on("pageerror", (e) => seen.pageErrors.push(String(e?.stack ?? e)));
    page.on("console", (m) => {
        if (m.type() === "error") seen.consoleErrors.push(m.text());
    });
    page.on("response", (r) => {
        if (r.url().startsWith(homeserver) && r.status() >= 400) {
            seen.badResponses.push(`${r.request().method()} ${new URL(r.url()).pathname} → ${r.status()}`);
        }
    });
    page.on("requestfailed", (r) => {
        if (r.url().startsWith(homeserver)) {
            seen.badResponses.push(`${r.method()} ${new URL(r.url()).pathname} → ${r.failure()?.errorText}`);
        }
    });
    return seen;
}

test("Hydrogen: log in, open a shared room, send from the composer, see it on the other side", async (t) => {
    assert.ok(existsSync(CHROMIUM), `${CHROMIUM} missing: apt-get install -y chromium (spec-tests/clients/run does)`);
    const shots = screenshotDir("hydrogen");
    t.diagnostic(`screenshots: ${shots}`);
    process.stderr.write(`hydrogen screenshots: ${shots}\n`);

    const server = await startMyelin(t);
    const hs = server.baseUrl;
    const users = [];
    let shotIndex = 0;
    const shoot = async (user, label) => {
        const file = join(shots, `${String(++shotIndex).padStart(2, "0")}-${user.name}-${label}.png`);
        await user.page.screenshot({ path: file });
        return file;
    };
    const step = async (name, fn) => {
        try {
            return await fn();
        } catch (error) {
            const lines = [`step "${name}" failed: ${error?.message ?? error}`];
            for (const u of users) {
                const state = await u.page.evaluate(() => window.testState).catch(() => null);
                lines.push(`  ${u.name}: page state ${JSON.stringify(state)}`);
                for (const r of u.badResponses) lines.push(`  ${u.name}: homeserver answered ${r}`);
                for (const e of u.pageErrors) lines.push(`  ${u.name}: page error ${e}`);
                for (const e of u.consoleErrors.slice(-10)) lines.push(`  ${u.name}: console error ${e}`);
                await shoot(u, "FAILED").then((f) => lines.push(`  ${u.name}: screenshot ${f}`), () => {});
            }
            lines.push(`server log ${server.logPath} (KEEP_TMP=1 keeps it); last lines:`, server.logTail(25));
            throw new Error(lines.join("\n"), { cause: error });
        }
    };

    // Set-up over the client-server API, before any browser: two users in one room.
    const password = "hydrogen test password";
    const { alice, bob, roomId } = await step("set up users and room over the API", async () => {
        const alice = await registerUser(hs, "alice", { password, login: true });
        const bob = await registerUser(hs, "bob", { password, login: true });
        const { room_id: roomId } = await api(hs, alice.accessToken, "POST", "/_matrix/client/v3/createRoom", {
            preset: "private_chat",
            name: "Hydrogen meets Myelin",
            invite: [bob.userId],
        });
        await api(hs, bob.accessToken, "POST", `/_matrix/client/v3/join/${encodeURIComponent(roomId)}`, {});
        await api(hs, alice.accessToken, "PUT", `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/send/m.room.message/setup1`, {
            msgtype: "m.text",
            body: "Hello from the API, before anyone opened Hydrogen",
        });
        return { alice, bob, roomId };
    });

    const site = await step("bundle the page with esbuild and serve it", async () => {
        await buildPage();
        return serveSite(t);
    });

    const browser = await step("launch Chromium", () =>
        chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS }),
    );
    t.after(() => browser.close());

    const a = await openUser(browser, "alice", hs);
    const b = await openUser(browser, "bob", hs);
    users.push(a, b);

    for (const [u, account] of [[a, alice], [b, bob]]) {
        await step(`${u.name}: Hydrogen logs in, syncs and shows the room`, async () => {
            const query = new URLSearchParams({ hs, user: account.localpart, password, room: roomId });
            await u.page.goto(`${site}/?${query}`);
            await u.page.waitForFunction(() => window.testState?.step === "ready" || window.testState?.error, null, {
                timeout: 45_000,
            });
            const state = await u.page.evaluate(() => window.testState);
            assert.equal(state.error, null, `Hydrogen reported: ${state.error}`);
            assert.equal(state.userId, account.userId);
            await u.page.locator(".Timeline").getByText("Hello from the API").waitFor({ timeout: 15_000 });
            await u.page.locator(".RoomHeader").getByText("Hydrogen meets Myelin").waitFor({ timeout: 5_000 });
        });
        await step(`${u.name}: Hydrogen back-paginates to the room's start (GET /rooms/{id}/messages)`, async () => {
            // The initial sync's prev_batch makes a gap at the top; /messages from it must
            // reach the start of the room so the gap closes.
            await u.page.locator(".Timeline .GapView").waitFor({ state: "detached", timeout: 15_000 });
            await u.page.locator(".Timeline").getByText("joined the room").first().waitFor({ timeout: 5_000 });
            await shoot(u, "room-open");
        });
    }

    const conversation = [
        [a, b, `Hi Bob, this is Alice typing into Hydrogen (${Date.now()})`],
        [b, a, `Hi Alice, Bob here, answering from Hydrogen (${Date.now()})`],
    ];
    for (const [from, to, text] of conversation) {
        await step(`${from.name}: send from Hydrogen's composer`, async () => {
            const composer = from.page.locator(".MessageComposer textarea");
            await composer.waitFor({ timeout: 10_000 });
            await composer.fill(text);
            await shoot(from, "typed");
            await composer.press("Enter");
            await from.page.locator(".Timeline").getByText(text).waitFor({ timeout: 10_000 });
        });
        await step(`server has ${from.name}'s message (GET /rooms/{id}/messages)`, async () => {
            const token = from === a ? alice.accessToken : bob.accessToken;
            const path = `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/messages?dir=b&limit=5`;
            for (let i = 0; i < 100; i++) {
                const { chunk } = await api(hs, token, "GET", path);
                if (chunk.some((e) => e.content?.body === text)) return;
                await new Promise((r) => setTimeout(r, 100));
            }
            assert.fail(`no event with body ${JSON.stringify(text)} in the room`);
        });
        await step(`${to.name}: sees ${from.name}'s message in the timeline`, async () => {
            await to.page.locator(".Timeline").getByText(text).waitFor({ timeout: 15_000 });
            await shoot(from, "sent");
            await shoot(to, "received");
        });
    }

    await step("no homeserver request failed in either browser", async () => {
        const bad = users.flatMap((u) => u.badResponses.map((r) => `${u.name}: ${r}`));
        assert.deepEqual(bad, [], "homeserver requests that failed");
        const errors = users.flatMap((u) => u.pageErrors.map((e) => `${u.name}: ${e}`));
        assert.deepEqual(errors, [], "uncaught page errors");
    });
});
