// What the browser tests share: Debian's Chromium and how it is started, where screenshots
// go, and a tiny static file server on 127.0.0.1 for the page under test.

import { mkdirSync, mkdtempSync } from "node:fs";
import { createServer } from "node:http";
import { readFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { extname, join } from "node:path";

export const CHROMIUM = process.env.CHROMIUM_BIN ?? "/usr/bin/chromium";

// Playwright's launch() gives every run a fresh temporary --user-data-dir of its own.
export const CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
];

/** `SCREENSHOT_DIR`, or a new temporary directory named after the suite. */
export function screenshotDir(suite) {
    const dir = process.env.SCREENSHOT_DIR ?? mkdtempSync(join(tmpdir(), `myelin-${suite}-shots-`));
    mkdirSync(dir, { recursive: true });
    return dir;
}

const TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".wasm": "application/wasm",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".csv": "text/csv",
    ".txt": "text/plain; charset=utf-8",
    ".woff": "font/woff",
    ".woff2": "font/woff2",
};

/**
 * Serves files until the test `t` ends; resolves with the base URL. `fileFor(pathname)`
 * gives the file for a path (or null: 404); `generated` maps paths to JSON-able values
 * served instead of a file.
 */
export async function serveFiles(t, fileFor, generated = {}) {
    const server = createServer(async (req, res) => {
        const pathname = new URL(req.url, "http://x").pathname;
        if (Object.hasOwn(generated, pathname)) {
            res.writeHead(200, { "content-type": TYPES[".json"], "cache-control": "no-store" });
            res.end(JSON.stringify(generated[pathname]));
            return;
        }
        const path = fileFor(pathname);
        try {
            if (!path) throw new Error("bad path");
            const body = await readFile(path);
            res.writeHead(200, { "content-type": TYPES[extname(path)] ?? "application/octet-stream", "cache-control": "no-store" });
            res.end(body);
        } catch {
            res.writeHead(404, { "content-type": "text/plain" });
            res.end("not found");
        }
    });
    await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
    t.after(() => {
        server.closeAllConnections();
        return new Promise((resolve) => server.close(resolve));
    });
    return `http://127.0.0.1:${server.address().port}`;
}
