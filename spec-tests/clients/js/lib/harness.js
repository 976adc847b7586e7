// A scenario: one Myelin, matrix-js-sdk clients logged in the way Element Web does it, and
// failure messages that name the step and the endpoints that answered badly.

import { mkdtempSync, openSync, rmSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { format } from "node:util";

import * as sdk from "matrix-js-sdk";

import { registerUser, startMyelin } from "../../shared/myelin.js";

// The SDK (and the Rust crypto inside it) logs a lot through console.*: keep it in a file
// that a failure message points to, so test output stays readable.
const sdkLogDir = mkdtempSync(join(tmpdir(), "myelin-js-sdk-log-"));
const sdkLogPath = join(sdkLogDir, "sdk.log");
// Kept only when something failed (or KEEP_TMP is set).
process.on("exit", (code) => {
    if (code === 0 && !process.exitCode && !process.env.KEEP_TMP) rmSync(sdkLogDir, { recursive: true, force: true });
});
// Written synchronously: the test runner ends the process (--test-force-exit) right after
// the last test, and a failure's log must be complete.
const sdkLogFd = openSync(sdkLogPath, "a");
const sdkLog = { write: (text) => writeSync(sdkLogFd, text) };
for (const method of ["log", "debug", "info", "warn", "error", "trace"]) {
    console[method] = (...args) => sdkLog.write(`${new Date().toISOString()} ${method} ${format(...args)}\n`);
}

/** Non-2xx answers the SDK is expected to get from a correct server. */
const EXPECTED_FAILURES = [
    // No key backup yet: the spec's answer is 404 M_NOT_FOUND and the SDK then stops asking.
    { method: "GET", path: /\/room_keys\/version$/, status: 404, errcode: "M_NOT_FOUND" },
    // User-interactive auth starts with a 401 that lists the flows (cross-signing upload).
    { method: "POST", path: /\/keys\/device_signing\/upload$/, status: 401 },
    // Endpoints of MSCs the server does not implement: the spec wants 404/405 M_UNRECOGNIZED.
    { path: /\/unstable\//, status: [404, 405], errcode: "M_UNRECOGNIZED" },
];

function isExpected(failure) {
    return EXPECTED_FAILURES.some(
        (rule) =>
            (!rule.method || rule.method === failure.method) &&
            rule.path.test(failure.path) &&
            [rule.status].flat().includes(failure.status) &&
            (!rule.errcode || rule.errcode === failure.errcode),
    );
}

/** Records every HTTP exchange a client makes (only the ones that fail are kept in full). */
class HttpRecorder {
    constructor(name) {
        this.name = name;
        this.failures = [];
        this.requests = [];
        // Requests other than /sync long-polls in flight, and when the last one ended: what
        // the client is still doing on its own (key queries after a device-list change).
        this.busy = 0;
        this.lastBusy = Date.now();
        this.fetch = this.fetch.bind(this);
    }

    async fetch(input, init = {}) {
        const url = new URL(typeof input === "string" ? input : input.url ?? String(input));
        const method = (init.method ?? "GET").toUpperCase();
        const path = url.pathname;
        const counted = !path.endsWith("/sync");
        if (counted) this.busy += 1;
        let response;
        try {
            response = await fetch(input, init);
        } finally {
            if (counted) {
                this.busy -= 1;
                this.lastBusy = Date.now();
            }
        }
        this.requests.push(`${method} ${path}${url.search} → ${response.status}`);
        if (process.env.LOG_BODIES && new RegExp(process.env.LOG_BODIES).test(path)) {
            const text = await response.clone().text().catch(() => "");
            sdkLog.write(`HTTP ${this.name} ${method} ${path} → ${response.status}\n  request: ${init.body ?? ""}\n  response: ${text}\n`);
        }
        if (response.status >= 300) {
            const text = await response.clone().text().catch(() => "");
            let errcode;
            try {
                errcode = JSON.parse(text).errcode;
            } catch {
                /* not JSON */
            }
            this.failures.push({ method, path, query: url.search, status: response.status, errcode, body: text.slice(0, 300) });
        }
        return response;
    }

    unexpectedFailures() {
        return this.failures.filter((f) => !isExpected(f));
    }
}

function describeError(error) {
    if (error instanceof sdk.MatrixError) {
        return `${error.httpStatus} ${error.errcode ?? ""} ${error.data?.error ?? error.message} (${error.url ?? "url unknown"})`;
    }
    return error?.stack ?? String(error);
}

export class Scenario {
    /** Starts a fresh Myelin for the test `t`. */
    static async start(t) {
        const scenario = new Scenario(t);
        // Registered before the server's own hook, so it runs first: a request still in
        // flight when the server is killed rejects after this test has ended, and the test
        // runner blames whichever test runs next.
        t.after(() => scenario.stopClients());
        scenario.server = await startMyelin(t);
        return scenario;
    }

    constructor(t) {
        this.t = t;
        this.clients = [];
        this.server = null;
    }

    get baseUrl() {
        return this.server.baseUrl;
    }

    /** Runs one step; a failure names the step, the error and every bad HTTP answer so far. */
    async step(name, fn) {
        try {
            return await fn();
        } catch (error) {
            throw new Error(`step "${name}" failed: ${describeError(error)}\n${this.context()}`, { cause: error });
        }
    }

    context() {
        const lines = [];
        for (const client of this.clients) {
            const rec = client.recorder;
            if (client.lastSyncError) lines.push(`  ${rec.name}: last sync error: ${describeError(client.lastSyncError)}`);
            for (const f of rec.failures) {
                lines.push(`  ${rec.name}: ${f.method} ${f.path}${f.query} → ${f.status} ${f.body}${isExpected(f) ? " (expected)" : ""}`);
            }
        }
        if (lines.length === 0) lines.push("  (no HTTP request answered with an error)");
        return [
            "non-2xx answers seen by the clients:",
            ...lines,
            `server log: ${this.server?.logPath} (set KEEP_TMP=1 to keep it); last lines:`,
            this.server?.logTail(25) ?? "",
            `SDK log: ${sdkLogPath}`,
        ].join("\n");
    }

    /**
     * Registers `localpart` and logs in with matrix-js-sdk, as Element Web does; `threads`
     * turns on the SDK's thread support, which Element enables when the server has v1.4.
     */
    async login(localpart, { crypto = true, threads = false } = {}) {
        const account = await this.step(`register ${localpart}`, () => registerUser(this.baseUrl, localpart));
        const recorder = new HttpRecorder(localpart);
        const anonymous = sdk.createClient({ baseUrl: this.baseUrl, fetchFn: recorder.fetch });
        this.clients.push({ recorder });

        const versions = await this.step(`${localpart}: GET /_matrix/client/versions`, () => anonymous.getVersions());
        if (!versions.versions.some((v) => /^v1\.(1[0-3]?|[1-9])$/.test(v))) {
            throw new Error(`GET /versions lists none of v1.1–v1.13 (matrix-js-sdk refuses such a server): ${versions.versions}`);
        }
        const flows = await this.step(`${localpart}: GET /login`, () => anonymous.loginFlows());
        if (!flows.flows.some((f) => f.type === "m.login.password")) {
            throw new Error(`GET /login offers no m.login.password flow: ${JSON.stringify(flows)}`);
        }
        const login = await this.step(`${localpart}: POST /login`, () =>
            anonymous.loginRequest({
                type: "m.login.password",
                identifier: { type: "m.id.user", user: localpart },
                password: account.password,
                initial_device_display_name: `js-sdk test ${localpart}`,
            }),
        );
        for (const key of ["user_id", "access_token", "device_id"]) {
            if (!login[key]) throw new Error(`POST /login response lacks ${key}: ${JSON.stringify(login)}`);
        }

        const client = sdk.createClient({
            baseUrl: this.baseUrl,
            userId: login.user_id,
            deviceId: login.device_id,
            accessToken: login.access_token,
            fetchFn: recorder.fetch,
            timelineSupport: true,
        });
        const entry = this.clients.at(-1);
        entry.client = client;
        entry.recorder = recorder;
        client.on(sdk.ClientEvent.Sync, (state, _prev, data) => {
            if (state === sdk.SyncState.Error) entry.lastSyncError = data?.error;
        });

        if (crypto) {
            await this.step(`${localpart}: initRustCrypto`, () => client.initRustCrypto({ useIndexedDB: false }));
        }
        await this.step(`${localpart}: startClient until PREPARED`, async () => {
            const prepared = waitForEmit(client, sdk.ClientEvent.Sync, (state) => state === sdk.SyncState.Prepared, "sync state PREPARED", 20_000);
            await client.startClient({ initialSyncLimit: 20, lazyLoadMembers: true, threadSupport: threads });
            await prepared;
        });
        return client;
    }

    /**
     * Waits until `client` has synced past everything that happened so far (an account-data
     * marker comes back) and then made no request but /sync for `quietMs`: whatever the
     * sync told it to do (such as re-querying keys) is done.
     */
    async settled(client, quietMs = 300) {
        const recorder = this.clients.find((c) => c.client === client).recorder;
        const marker = `${Date.now()}-${Math.random()}`;
        await client.setAccountData("org.myelin.test.settled", { marker });
        await waitUntil("the client to sync its account-data marker", () => client.getAccountData("org.myelin.test.settled")?.getContent().marker === marker);
        await waitUntil(`${recorder.name}'s requests to stop for ${quietMs} ms`, () => recorder.busy === 0 && Date.now() - recorder.lastBusy >= quietMs);
    }

    /** Fails if any client got an error answer that a correct server would not give. */
    assertNoUnexpectedFailures() {
        const bad = this.clients.flatMap((c) => c.recorder.unexpectedFailures().map((f) => ({ ...f, who: c.recorder.name })));
        if (bad.length) {
            throw new Error(
                `the server answered requests with errors the SDK did not expect:\n${bad
                    .map((f) => `  ${f.who}: ${f.method} ${f.path}${f.query} → ${f.status} ${f.body}`)
                    .join("\n")}\n${this.context()}`,
            );
        }
    }

    /** Stops every client and waits (a little) for the requests they still had running. */
    async stopClients() {
        for (const { client, recorder } of this.clients) {
            client?.stopClient();
            sdkLog.write(`--- HTTP requests of ${recorder.name} ---\n${recorder.requests.join("\n")}\n`);
        }
        const deadline = Date.now() + 3000;
        while (this.clients.some(({ recorder }) => recorder.busy > 0) && Date.now() < deadline) {
            await new Promise((r) => setTimeout(r, 50));
        }
    }
}

/**
 * Resolves with the arguments of the first `eventName` emitted by `emitter` for which
 * `predicate` holds. Register it before doing what should cause the event.
 */
export function waitForEmit(emitter, eventName, predicate, what, timeoutMs = 10_000) {
    return new Promise((resolve, reject) => {
        const listener = (...args) => {
            let ok;
            try {
                ok = predicate(...args);
            } catch (e) {
                ok = false;
            }
            if (ok) {
                clearTimeout(timer);
                emitter.off(eventName, listener);
                resolve(args);
            }
        };
        const timer = setTimeout(() => {
            emitter.off(eventName, listener);
            reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`));
        }, timeoutMs);
        emitter.on(eventName, listener);
    });
}

/** Polls `check` until it returns something truthy. */
export async function waitUntil(what, check, timeoutMs = 10_000) {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
        const value = await check();
        if (value) return value;
        if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
        await new Promise((r) => setTimeout(r, 50));
    }
}

export { sdk };
