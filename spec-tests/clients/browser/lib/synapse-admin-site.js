// Serves synapse-admin's release build (vendor/synapse-admin/dist, see its README.md) on
// 127.0.0.1, as an operator would put it behind any web server. Its config.json is written
// per test: `restrictBaseUrl` pins the login page to the test's own Myelin, so the page
// never guesses a homeserver from a user id (no .well-known look-up anywhere).

import { dirname, join, normalize } from "node:path";
import { fileURLToPath } from "node:url";

import { serveFiles } from "./browser.js";

export const SYNAPSE_ADMIN_DIST = join(dirname(fileURLToPath(import.meta.url)), "..", "vendor", "synapse-admin", "dist");

/** The build's file for a path; the app routes in the fragment (#/users), so `/` is index.html. */
function fileFor(pathname) {
    const name = normalize(decodeURIComponent(pathname)).replace(/^\/+/, "") || "index.html";
    return name.includes("..") ? null : join(SYNAPSE_ADMIN_DIST, name);
}

/**
 * Serves the app until the test `t` ends; resolves with its base URL. `homeserver` is the
 * only base URL the login page offers.
 */
export function serveSynapseAdmin(t, homeserver) {
    return serveFiles(t, fileFor, { "/config.json": { restrictBaseUrl: homeserver } });
}
