// Element Web's start-up path: versions, login flows, password login, Rust crypto (device
// and one-time keys uploaded), push rules, filter, initial sync until PREPARED.

import assert from "node:assert/strict";
import { test } from "node:test";

import { Scenario, waitUntil } from "../lib/harness.js";

test("login, initRustCrypto and startClient reach PREPARED", async (t) => {
    const s = await Scenario.start(t);
    const alice = await s.login("alice");

    await s.step("client knows who it is", async () => {
        assert.equal(alice.getUserId(), "@alice:localhost");
        assert.ok(alice.getDeviceId(), "device id from POST /login");
        const whoami = await alice.whoami();
        assert.equal(whoami.user_id, "@alice:localhost", "GET /account/whoami");
        assert.equal(whoami.device_id, alice.getDeviceId(), "GET /account/whoami device_id");
    });

    await s.step("push rules loaded (GET /pushrules/)", async () => {
        assert.ok(alice.pushRules?.global, "client.pushRules.global after sync");
        const master = alice.pushRules.global.override?.find((r) => r.rule_id === ".m.rule.master");
        assert.ok(master, "server-default .m.rule.master present");
    });

    await s.step("Rust crypto uploaded device keys (POST /keys/upload, checked with POST /keys/query)", async () => {
        const crypto = alice.getCrypto();
        assert.ok(crypto, "getCrypto() after initRustCrypto");
        const own = await crypto.getOwnDeviceKeys();
        const deviceId = alice.getDeviceId();
        const query = await waitUntil("device keys published on the server", async () => {
            const r = await alice.downloadKeysForUsers(["@alice:localhost"]);
            return r.device_keys?.["@alice:localhost"]?.[deviceId] ? r : null;
        });
        const device = query.device_keys["@alice:localhost"][deviceId];
        assert.equal(device.keys[`ed25519:${deviceId}`], own.ed25519, "ed25519 key the server returns");
        assert.equal(device.keys[`curve25519:${deviceId}`], own.curve25519, "curve25519 key the server returns");
        assert.ok(device.algorithms.includes("m.megolm.v1.aes-sha2"));
        const devices = await crypto.getUserDeviceInfo(["@alice:localhost"]);
        assert.ok(devices.get("@alice:localhost")?.get(deviceId), "crypto sees its own device via /keys/query");
    });

    await s.step("one-time keys counted by the server (device_one_time_keys_count in /sync)", async () => {
        // The SDK keeps uploading until the server's count reaches its target; a server that
        // never reports the count makes it upload forever.
        const uploads = () => s.clients[0].recorder.requests.filter((r) => r.startsWith("POST /_matrix/client/v3/keys/upload")).length;
        await waitUntil("a /keys/upload", async () => uploads() > 0);
        const before = uploads();
        await new Promise((r) => setTimeout(r, 1500));
        assert.ok(uploads() - before <= 1, `keys/upload keeps being called (${uploads()} times)`);
    });

    await s.step("capabilities and profile", async () => {
        const caps = await alice.getCapabilities();
        assert.ok(caps["m.room_versions"]?.default, "GET /capabilities has m.room_versions");
        const profile = await alice.getProfileInfo("@alice:localhost");
        assert.equal(typeof profile, "object", "GET /profile/{me}");
    });

    s.assertNoUnexpectedFailures();
});
