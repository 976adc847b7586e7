// Starts a real Myelin for one scenario: its own temporary data directory, an ephemeral
// loopback port, open registration, and the default per-user abuse limits (so the clients
// show they live with them); only the per-IP login and registration limits are opened up,
// since every scenario signs in from one address. Nothing here knows Myelin's insides.

import { spawn } from "node:child_process";
import { createWriteStream, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const CONFIG = `
[registration]
mode = "open"
[rate_limits.login]
per_second = 1000.0
burst = 1000
[rate_limits.register]
per_second = 1000.0
burst = 1000
[log]
level = "info,ruma_state_res=warn"
`;

export function myelinBin() {
    const bin = process.env.MYELIN_BIN;
    if (!bin) {
        throw new Error("MYELIN_BIN is not set: point it at a built myelin binary (cargo build --bin myelin)");
    }
    return bin;
}

/**
 * Starts Myelin and resolves once it prints "listening on http://ADDR".
 * `t` is the node:test context: the server is killed when the test ends.
 */
export async function startMyelin(t) {
    const dir = mkdtempSync(join(tmpdir(), "myelin-js-"));
    const configPath = join(dir, "myelin.toml");
    const logPath = join(dir, "server.log");
    writeFileSync(configPath, CONFIG);
    const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("MYELIN_")));
    const child = spawn(
        myelinBin(),
        ["serve", "--listen", "127.0.0.1:0", "--data-dir", join(dir, "data"), "--config", configPath],
        { env, stdio: ["ignore", "ignore", "pipe"] },
    );
    const log = createWriteStream(logPath);
    const server = {
        dir,
        logPath,
        baseUrl: null,
        logTail(lines = 40) {
            try {
                return readFileSync(logPath, "utf8").trimEnd().split("\n").slice(-lines).join("\n");
            } catch {
                return "(no server log)";
            }
        },
        async stop() {
            if (child.exitCode === null && child.signalCode === null) {
                child.kill("SIGKILL");
                await new Promise((resolve) => child.once("exit", resolve));
            }
            log.end();
        },
    };

    server.baseUrl = await new Promise((resolve, reject) => {
        let buffered = "";
        const timer = setTimeout(() => reject(new Error(`myelin did not print its address within 30 s; log:\n${buffered}`)), 30_000);
        child.once("error", (e) => {
            clearTimeout(timer);
            reject(new Error(`cannot start ${myelinBin()}: ${e.message}`));
        });
        child.once("exit", (code, signal) => {
            clearTimeout(timer);
            reject(new Error(`myelin exited (${code ?? signal}) before listening; log:\n${buffered}`));
        });
        child.stderr.on("data", (chunk) => {
            log.write(chunk);
            if (buffered === null) return;
            buffered += chunk.toString();
            const match = buffered.match(/listening on (http:\/\/[0-9.:]+)/);
            if (match) {
                clearTimeout(timer);
                buffered = null;
                resolve(match[1]);
            }
        });
    });

    t.after(async () => {
        await server.stop();
        if (process.env.KEEP_TMP) {
            process.stderr.write(`kept ${dir}\n`);
        } else {
            rmSync(dir, { recursive: true, force: true });
        }
    });
    return server;
}

/**
 * Registers a user with open registration (m.login.dummy) over plain HTTP. With
 * `login: true` the answer's access token is kept (a device is created for it).
 */
export async function registerUser(baseUrl, localpart, { password = "correct horse battery staple", login = false } = {}) {
    const reply = await api(baseUrl, null, "POST", "/_matrix/client/v3/register", {
        username: localpart,
        password,
        auth: { type: "m.login.dummy" },
        inhibit_login: !login,
    });
    return { userId: reply.user_id, localpart, password, accessToken: reply.access_token };
}

/** One client-server API call; anything but 200 throws with the endpoint and the answer. */
export async function api(baseUrl, accessToken, method, path, body) {
    const headers = { "content-type": "application/json" };
    if (accessToken) headers.authorization = `Bearer ${accessToken}`;
    const response = await fetch(`${baseUrl}${path}`, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await response.text();
    if (response.status !== 200) {
        throw new Error(`${method} ${path} → ${response.status} ${text}`);
    }
    return JSON.parse(text);
}
