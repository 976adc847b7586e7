// The test page, served on 127.0.0.1.
//
// The page (page/main.js) imports hydrogen-view-sdk by its bare package names, so esbuild
// bundles it into build/app.js. Hydrogen also needs, at the page root: its assets
// (asset-build/assets/*: CSS, the worker main.js, download-sandbox.html, fonts, icons),
// its service worker (lib-build/sw.js; mandatory in 0.3.1) and the olm files.

import { dirname, join, normalize } from "node:path";
import { fileURLToPath } from "node:url";

import { build } from "esbuild";

import { serveFiles } from "./browser.js";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const modules = join(root, "node_modules");
const buildDir = join(root, "build");

export async function buildPage() {
    await build({
        entryPoints: [join(root, "page", "main.js")],
        bundle: true,
        format: "esm",
        platform: "browser",
        target: "es2020",
        outfile: join(buildDir, "app.js"),
        // olm's emscripten glue mentions these Node modules but never calls them in a browser.
        external: ["fs", "path", "crypto"],
        logLevel: "warning",
    });
}

function fileFor(pathname) {
    const name = normalize(decodeURIComponent(pathname)).replace(/^\/+/, "");
    if (name.includes("..")) return null;
    switch (name) {
        case "":
        case "index.html":
            return join(root, "page", "index.html");
        case "app.js":
            return join(buildDir, "app.js");
        case "sw.js":
            return join(modules, "hydrogen-view-sdk", "lib-build", "sw.js");
        case "olm.js":
        case "olm.wasm":
        case "olm_legacy.js":
            return join(modules, "@matrix-org", "olm", name);
        default:
            return join(modules, "hydrogen-view-sdk", "asset-build", "assets", name);
    }
}

/** Serves the page until the test ends; resolves with its base URL. */
export function serveSite(t) {
    return serveFiles(t, fileFor);
}
