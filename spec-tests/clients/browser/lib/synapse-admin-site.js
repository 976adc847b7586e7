// Serves synapse-admin's release build (vendor/synapse-admin/dist, see its README.md) on
// 127.0.0.1, as an operator would put it behind any web server. Its config.json is written
// per test: `restrictBaseUrl` pins the login page to the test's own Myelin, so the page
// never guesses a homeserver from a user id (no .well-known look-up anywhere).

import { createServer } from "node:http";
import { readFile } from "node:fs/promises";
import { dirname, extname, join, normalize } from "node:path";
import { fileURLToPath } from "node:url";

export const SYNAPSE_ADMIN_DIST = join(dirname(fileURLToPath(import.meta.url)), "..", "vendor", "synapse-admin", "dist");

const TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".svg": "image/svg+xml",
    ".ico": "image/x-icon",
    ".csv": "text/csv",
    ".txt": "text/plain; charset=utf-8",
};

/**
 * Serves the app until the test `t` ends; resolves with its base URL. `homeserver` is the
 * only base URL the login page offers.
 */
export async function serveSynapseAdmin(t, homeserver) {
    const config = JSON.stringify({ restrictBaseUrl: homeserver });
    const server = createServer(async (req, res) => {
        const pathname = new URL(req.url, "http://x").pathname;
        if (pathname === "/config.json") {
            res.writeHead(200, { "content-type": TYPES[".json"], "cache-control": "no-store" });
            res.end(config);
            return;
        }
        // The app routes in the URL's fragment (#/users), so every page is index.html.
        const name = normalize(decodeURIComponent(pathname)).replace(/^\/+/, "") || "index.html";
        try {
            if (name.includes("..")) throw new Error("bad path");
            const path = join(SYNAPSE_ADMIN_DIST, name);
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
